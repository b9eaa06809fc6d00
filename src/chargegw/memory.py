"""Memory housekeeping shared by every long-running process (`process.run_loop` starts it):
glibc's malloc tuned and trimmed so that a process's heap does not ratchet up with freed
memory it keeps (what failed the soak, issue 14). Imports nothing of chargegw."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import sys
import time
from typing import Any

import orjson

log = logging.getLogger("chargegw.process")

# Memory housekeeping --------------------------------------------------------------------
#
# glibc's malloc maps a big block on its own (and unmaps it when freed) only while the block
# is above M_MMAP_THRESHOLD, and that threshold rises to the size of every mapped block freed
# (up to 32 MiB), the trim threshold with it (twice that). A process whose big blocks are
# re-allocated now and then (a dict of 100,000 entries re-sizes its ~10 MiB table under
# churn: the duplicate cache) soon has them in its heap, where a freed one stays resident,
# and its heaps are handed back to the kernel only from their top. A burst (a load stall
# releasing a backlog) leaves the same behind. The RSS then ratchets up in steps with nothing
# live behind it. So every long-running process (`run_loop`):
#
# - pins the mmap threshold at MMAP_THRESHOLD (`tune_malloc`): a block of 1 MiB or more is
#   always mapped on its own and unmapped when freed (glibc then no longer moves the trim
#   threshold either: the top of a heap goes back past 128 KiB free, its default);
# - runs a `MemoryKeeper`: every TRIM_EVERY seconds, when RssAnon has grown by more than
#   TRIM_STEP since the last trim and the heaps hold more than TRIM_STEP free,
#   `malloc_trim(0)` returns the free pages of every heap (the middle of a heap, and the
#   heaps of other threads: ZeroMQ's). A steady process, whose RSS does not move, is never
#   made to fault its pages back; RSS decides, not the free figure alone, because trimmed
#   pages still count as free to malloc.
#
# Neither applies without glibc (musl, macOS), nor when MALLOC_MMAP_THRESHOLD_ (glibc's own
# switch) is set, nor with CHARGEGW_MALLOC_TRIM=0.

TRIM_EVERY = 1.0  # seconds between two checks (a check reads /proc/self/status)
TRIM_STEP = 4 << 20  # bytes of RssAnon growth (and of free heap) worth a trim
MMAP_THRESHOLD = 1 << 20  # blocks this big are mapped on their own, whatever was freed before
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
ENV_MEMLOG = "CHARGEGW_MEMLOG"  # a directory: each process appends its memory figures there
ENV_MALLOC_TRIM = "CHARGEGW_MALLOC_TRIM"  # "0": leave glibc's malloc to its defaults
_OFF = ("0", "false", "no", "off")
ENV_GC = "CHARGEGW_GC_TUNE"  # "0": leave the cyclic garbage collector to its defaults
# Container allocations between two young-generation passes (CPython's default is 700). A
# request allocates a few hundred and keeps almost none (reference counting frees them), so
# at 700 a pass runs every few requests to find nothing: 6.5% of a worker's instructions per
# CCR (cachegrind). At this figure garbage in cycles waits a little longer (bounded: at most
# this many containers), and older generations are scanned ten times less often.
GC_THRESHOLDS = (20_000, 20, 20)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes the heaps took from the kernel (sbrk and thread heaps)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in blocks mmap'd on their own
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use in the heaps
            "fordblks",  # bytes free in the heaps
            "keepcost",  # of those, at the top of the main heap
        )
    ]


_GLIBC: list[Any] = []  # [CDLL or None], resolved once


def _glibc() -> Any:
    """The C library when it is glibc with mallinfo2, malloc_trim and mallopt (2.33+), else
    None (musl, macOS: nothing to do; their allocators return memory by their own rules)."""
    if not _GLIBC:
        lib: Any = None
        try:
            c = ctypes.CDLL(None)
            names = ("gnu_get_libc_version", "mallinfo2", "malloc_trim", "mallopt")
            if all(hasattr(c, f) for f in names):
                c.mallinfo2.restype = _Mallinfo2
                c.malloc_trim.argtypes = [ctypes.c_size_t]
                c.malloc_trim.restype = ctypes.c_int
                c.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                c.mallopt.restype = ctypes.c_int
                lib = c
        except (OSError, TypeError):  # TypeError: no CDLL(None) (Windows)
            pass
        _GLIBC.append(lib)
    return _GLIBC[0]


def malloc_tuning_wanted(env: Any = None) -> bool:
    """False when CHARGEGW_MALLOC_TRIM says 0 (or false, no, off)."""
    env = os.environ if env is None else env
    return str(env.get(ENV_MALLOC_TRIM, "1")).strip().lower() not in _OFF


def tune_gc(env: Any = None) -> bool:
    """Fewer cyclic-GC passes (GC_THRESHOLDS), and what is alive now (modules, the
    dictionary, an application's set-up) moved out of every future pass (`gc.freeze`): a
    long-running process calls it at start and again once set up. False with
    CHARGEGW_GC_TUNE=0 (nothing done)."""
    env = os.environ if env is None else env
    if str(env.get(ENV_GC, "1")).strip().lower() in _OFF:
        return False
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    return True


def tune_malloc(threshold: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold (see above); False when nothing was done (no glibc, the
    operator set MALLOC_MMAP_THRESHOLD_, or glibc refused)."""
    c = _glibc()
    if c is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(c.mallopt(_M_MMAP_THRESHOLD, threshold) == 1)


def heap_figures() -> dict[str, int]:
    """glibc's view of the heap (bytes), {} elsewhere: taken, mmap'd, in use, free."""
    c = _glibc()
    if c is None:
        return {}
    mi = c.mallinfo2()
    return {
        "heap": int(mi.arena),
        "mmap": int(mi.hblkhd),
        "used": int(mi.uordblks),
        "free": int(mi.fordblks),
    }


def trim_heap() -> bool:
    """Hand the heaps' free pages back to the kernel (glibc's malloc_trim(0)); False where
    there is no glibc (nothing done)."""
    c = _glibc()
    if c is None:
        return False
    c.malloc_trim(0)
    return True


def rss_kb(field: str = "RssAnon", fd: int | None = None) -> int:
    """This process's resident memory of one kind, in KiB (0 where /proc has no such line).
    `fd`: /proc/self/status kept open (read again from offset 0), so that a periodic check
    opens no descriptor: the soak counts them, and a short-lived one is growth to it."""
    try:
        if fd is None:
            with open("/proc/self/status", "rb") as f:
                text = f.read()
        else:
            text = os.pread(fd, 8192, 0)
    except OSError:
        return 0
    key = field.encode() + b":"
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


class MemoryKeeper:
    """Every `every` seconds: when RssAnon has grown by more than `step` bytes since the last
    trim (or the start) and the heaps hold more than `step` free bytes, trim them.
    With `memlog` (a directory), append one JSON line per check to mem-<pid>.jsonl there:
    RssAnon before and after, glibc's figures, Python's allocated blocks (a leak of Python
    objects grows those; the allocator keeping freed memory grows only `free`)."""

    def __init__(
        self,
        every: float = TRIM_EVERY,
        step: int = TRIM_STEP,
        *,
        trim: bool = True,
        memlog: str | None = None,
        log_every: float = 5.0,
        role: str = "chargegw",
    ) -> None:
        self.every = every
        self.step = step
        self.base_kb = 0  # RssAnon right after the last trim (0: none yet)
        self.trim = trim and _glibc() is not None
        self.memlog = memlog
        self.role = role  # what its memlog lines call the process (gateway, a worker id)
        self.log_every = log_every  # seconds between two memlog lines (a trim writes one too)
        self.trims = 0
        self._t0 = time.monotonic()
        self._next_log = 0.0
        # Opened once and kept (see rss_kb), as is the memlog file; `close` lets them go.
        self._status: int | None = None
        self._log: Any = None

    @classmethod
    def from_env(cls, role: str = "chargegw") -> MemoryKeeper:
        return cls(
            trim=malloc_tuning_wanted(), memlog=os.environ.get(ENV_MEMLOG) or None, role=role
        )

    def check(self) -> dict[str, Any]:
        """One check: trim when worth it; what was seen and done ({} when nothing was
        worth a look nor a memlog line)."""
        if self._status is None:
            try:
                self._status = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._status = -1  # no /proc: rss_kb says 0, so nothing ever grows
        anon = rss_kb(fd=self._status) if self._status >= 0 else 0
        grown = self.trim and (anon - self.base_kb) * 1024 > self.step
        now = time.monotonic()
        log_now = bool(self.memlog) and now >= self._next_log
        if not (grown or log_now):
            if not self.base_kb or anon < self.base_kb:
                self.base_kb = anon  # gave memory back by itself: a lower baseline
            return {}
        heap = heap_figures()
        doc: dict[str, Any] = {
            "t": round(now - self._t0, 1),
            "role": self.role,
            "anon_kb": anon,
            "py_blocks": sys.getallocatedblocks(),
            **heap,
        }
        if grown and heap.get("free", 0) > self.step:
            t = time.perf_counter()
            trim_heap()
            doc["trim_ms"] = round((time.perf_counter() - t) * 1000, 2)
            self.trims += 1
            self.base_kb = rss_kb(fd=self._status)
            doc["trimmed"] = True
            doc["anon_after_kb"] = self.base_kb
            log_now = bool(self.memlog)
        elif not self.base_kb or anon < self.base_kb:
            self.base_kb = anon
        if log_now and self.memlog:
            self._next_log = now + self.log_every
            try:
                if self._log is None:
                    path = os.path.join(self.memlog, f"mem-{os.getpid()}.jsonl")
                    self._log = open(path, "ab", buffering=0)  # kept open
                self._log.write(orjson.dumps(doc) + b"\n")
            except OSError:
                pass
        return doc

    def close(self) -> None:
        """Let go of the descriptors the checks keep."""
        if self._status is not None and self._status >= 0:
            os.close(self._status)
        self._status = None
        if self._log is not None:
            self._log.close()
            self._log = None

    async def run(self) -> None:
        if not (self.trim or self.memlog):
            return
        try:
            while True:
                await asyncio.sleep(self.every)
                try:
                    self.check()
                except Exception:
                    log.exception("memory housekeeping failed")
        finally:
            self.close()
