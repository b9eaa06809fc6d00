"""The benchmarks' child-process wrapper (`chargegw.gateway.bench.Proc`) must never stall the
processes it runs: their output goes on being taken after the start-up line was read."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from chargegw.gateway.bench import Proc


def test_a_child_that_writes_a_lot_after_its_start_line_is_not_blocked(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    code = (
        "import sys, pathlib, time\n"
        "print('ready', flush=True)\n"
        "sys.stdout.write('log line\\n' * 200_000); sys.stdout.flush()\n"  # ~1.8 MB, > a pipe
        f"pathlib.Path({str(marker)!r}).write_text('x')\n"
        "time.sleep(30)\n"
    )
    p = Proc([sys.executable, "-c", code])
    try:
        p.wait_line(r"^ready$", 20)
        end = time.monotonic() + 20
        while not marker.exists():  # blocked on a full pipe, it would never get there
            assert time.monotonic() < end, "the child is blocked writing its output"
            time.sleep(0.05)
    finally:
        p.stop()
    out = p.output(5)
    assert out.count("log line") == 200_000 and "ready" in out


def test_lines_after_a_match_are_kept_for_the_next_wait() -> None:
    p = Proc([sys.executable, "-c", "print('one\\ntwo\\nthree', flush=True)"])
    assert p.wait_line(r"^one$", 20).group(0) == "one"
    assert p.wait_line(r"^three$", 20).group(0) == "three"  # read with "one", found later
    assert p.output(5).split() == ["one", "two", "three"]
