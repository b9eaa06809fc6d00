"""The memory housekeeping every long-running process runs (chargegw.memory.MemoryKeeper).

A burst leaves glibc's heaps holding free but resident memory; the keeper hands it back
once RssAnon has grown by a step, and leaves a process whose RSS does not move alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chargegw import memory
from chargegw.config import load_config
from chargegw.memory import MemoryKeeper, heap_figures, rss_kb

glibc = pytest.mark.skipif(memory._glibc() is None, reason="needs glibc (malloc_trim, mallinfo2)")
STEP = 4 << 20


def _burst(mib: int) -> list[bytearray]:
    """Take `mib` MiB of the glibc heap in blocks Python does not pool (> 512 bytes) nor mmap
    (< 128 KiB), and free all but every 64th: the heap keeps the rest free, resident."""
    blocks = [bytearray(b"x" * 4000) for _ in range(mib * 256)]
    return blocks[::64]


@glibc
def test_a_burst_is_handed_back_and_a_steady_process_is_left_alone() -> None:
    keeper = MemoryKeeper(step=STEP)
    keeper.check()  # the baseline (a trim, if the process already held much free heap)
    trims = keeper.trims
    kept = _burst(64)
    free, before = heap_figures()["free"], rss_kb()
    assert free > 32 << 20  # the burst's blocks are free in the heap ...
    keeper.check()
    after = rss_kb()
    assert keeper.trims == trims + 1
    assert before - after > 32 << 10  # ... and more than half of them left RssAnon (KiB)
    assert abs(keeper.base_kb - after) < 1024  # the baseline is the RSS after the trim
    for _ in range(3):  # nothing grew since: no trim, however much the heap calls free
        keeper.check()
    assert keeper.trims == trims + 1
    assert len(kept) == 64 * 256 // 64


@glibc
def test_no_trim_when_switched_off_and_the_memlog_says_what_it_saw(tmp_path: Path) -> None:
    keeper = MemoryKeeper(step=STEP, trim=False, memlog=str(tmp_path))
    kept = _burst(32)
    doc = keeper.check()
    assert keeper.trims == 0 and "trimmed" not in doc
    assert doc["free"] > 16 << 20 and doc["anon_kb"] > 0 and doc["py_blocks"] > 0
    line = (tmp_path / f"mem-{os.getpid()}.jsonl").read_text().splitlines()[-1]
    assert json.loads(line)["free"] == doc["free"]
    del kept


def test_without_glibc_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_GLIBC", [None])
    keeper = MemoryKeeper(step=0)
    assert heap_figures() == {} and not memory.trim_heap()
    assert keeper.check() == {} and keeper.trims == 0
    asyncio.run(asyncio.wait_for(keeper.run(), 1))  # returns at once: nothing to keep


def test_env_switches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(memory.ENV_MALLOC_TRIM, "0")
    monkeypatch.setenv(memory.ENV_MEMLOG, str(tmp_path))
    keeper = MemoryKeeper.from_env()
    assert not keeper.trim and keeper.memlog == str(tmp_path)
    monkeypatch.delenv(memory.ENV_MALLOC_TRIM)
    assert MemoryKeeper.from_env().trim == (memory._glibc() is not None)
    # process switches, not config keys: a config still loads with them set
    env = {memory.ENV_MALLOC_TRIM: "0", memory.ENV_MEMLOG: str(tmp_path)}
    assert load_config(None, env=env).pool.deadline > 0


_PROBE = """
import sys
from chargegw import memory
if sys.argv[1] == "tuned":
    assert memory.tune_malloc()
big = bytearray(8 << 20)  # mapped on its own (above the default threshold) ...
del big  # ... and unmapped: glibc raises its threshold to 8 MiB unless pinned
before = memory.heap_figures()
block = bytearray(4 << 20)  # under a raised threshold this one lands in the heap
after = memory.heap_figures()
print(after["heap"] - before["heap"], after["mmap"] - before["mmap"])
"""


@glibc
@pytest.mark.parametrize("mode", ["default", "tuned"])
def test_pinned_mmap_threshold_keeps_big_blocks_out_of_the_heap(mode: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    heap_grew, mapped = (int(x) for x in out.stdout.split())
    if mode == "tuned":  # mapped on its own: unmapped (given back) when freed
        assert mapped >= 4 << 20 and heap_grew < 1 << 20
    else:  # glibc's dynamic threshold: the heap took it (what the soak's gateway showed)
        assert heap_grew >= 3 << 20 and mapped < 1 << 20


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_checks_keep_their_descriptors_instead_of_opening_one_each_time(tmp_path: Path) -> None:
    """The soak counts descriptors every second: one a check opened and closed again would
    be caught now and then, and judged growth. The keeper opens its two once and keeps them."""
    opened: list[str] = []
    real_open, real_os_open = open, os.open

    def spy_open(path: Any, *a: Any, **kw: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *a, **kw)

    def spy_os_open(path: Any, *a: Any, **kw: Any) -> int:
        opened.append(str(path))
        return real_os_open(path, *a, **kw)

    keeper = MemoryKeeper(step=STEP, memlog=str(tmp_path), log_every=0.0)
    mp = pytest.MonkeyPatch()
    mp.setattr("builtins.open", spy_open)
    mp.setattr(os, "open", spy_os_open)
    try:
        keeper.check()
        held = _fds()
        for _ in range(20):
            keeper.check()
    finally:
        mp.undo()
    assert _fds() == held
    assert sorted(opened) == sorted(
        ["/proc/self/status", str(tmp_path / f"mem-{os.getpid()}.jsonl")]
    )
    assert len((tmp_path / f"mem-{os.getpid()}.jsonl").read_text().splitlines()) == 21
    keeper.close()
    assert _fds() == held - 2


_GC_PROBE = """
import gc, sys
from chargegw.memory import GC_THRESHOLDS, tune_gc
from chargegw.process import run_loop

async def main():
    return gc.get_threshold(), gc.get_freeze_count()

threshold, frozen = run_loop(main())
print(tuple(threshold) == GC_THRESHOLDS, frozen > 10_000)
"""


@pytest.mark.parametrize(("switch", "tuned"), [(None, True), ("0", False)])
def test_long_running_processes_run_fewer_gc_passes(switch: str | None, tuned: bool) -> None:
    # run_loop, which every long-running command goes through, raises the collector's
    # thresholds and freezes what is alive (modules, the dictionary, a worker's set-up);
    # CHARGEGW_GC_TUNE=0 leaves Python's defaults. In a child: it changes the process.
    env = {k: v for k, v in os.environ.items() if k != "CHARGEGW_GC_TUNE"}
    if switch is not None:
        env["CHARGEGW_GC_TUNE"] = switch
    out = subprocess.run(
        [sys.executable, "-c", _GC_PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tuned), str(tuned)]
