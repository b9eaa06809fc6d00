"""The reliability scenarios' load generator writes to a file, not a pipe read only at the
end (`chargegw.loadtest.reliability.popen_logged`): a chatty child must never block."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chargegw.loadtest import reliability as rel

pytestmark = pytest.mark.timeout(60)


def test_a_child_that_writes_a_megabyte_before_exiting_is_not_blocked() -> None:
    # ~1.2 MB on stdout and stderr, then exit: with a pipe nobody reads until the child has
    # exited, it blocks at 64 KiB and never exits.
    code = (
        "import sys\n"
        "for i in range(60_000):\n"
        "    print(f'line {i:08d}', file=sys.stderr if i % 2 else sys.stdout)\n"
        "print('the end')\n"
    )
    p, log = rel.popen_logged([sys.executable, "-c", code])
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail("the child blocked writing its output")
    out = rel.logged_output(p, log, timeout=5)
    assert p.returncode == 0 and log.closed
    lines = out.splitlines()
    assert len(lines) == 60_001 and lines[-1] == "the end"
    assert sorted(lines[:-1]) == [f"line {i:08d}" for i in range(60_000)]


def test_logged_output_times_out_like_communicate() -> None:
    p, log = rel.popen_logged([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            rel.logged_output(p, log, timeout=0.2)
    finally:
        p.kill()
        p.wait()
        log.close()
