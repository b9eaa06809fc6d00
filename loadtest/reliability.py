"""Reliability scenarios against `chargegw run` as users run it, and `chargegw bench reliability`.

Each scenario starts the real gateway (`chargegw run`, loopback, a fresh data dir), injects one
kind of fault while traffic runs, and returns a `Result`: what was injected, what was offered,
answered and lost, double charges read from the ledger, the ledger's difference from the usage
reported, the peak RSS of the gateway and its workers, and the failures found, in words. The
tests in `tests/reliability/` run them at test size and assert on those fields; the bench runs
them at a bounded size and prints one table. Nothing here imports the gateway or the workers:
they are driven through their command line, sockets and data files, as an operator would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from chargegw.codec import CodecError, Message, ResultCode
from chargegw.codec.commands import (
    AccountingRequest,
    CapabilitiesExchangeRequest,
    CreditControlRequest,
)

CLI = [sys.executable, "-m", "chargegw.cli"]
_U32 = struct.Struct(">I")
FLAG_R, FLAG_E, FLAG_T = 0x80, 0x20, 0x10
GY = 4
# the gateway's own answers when it cannot place a request: RFC 6733 transient errors
RFC_TRANSIENT = {int(ResultCode.DIAMETER_TOO_BUSY), int(ResultCode.DIAMETER_UNABLE_TO_DELIVER)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- processes ----------------------------------------------------------------------------


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """Resident set size of a process in KiB (0 once it is gone); `field` "RssAnon" for its
    anonymous part only (heap: what a leak grows), "RssFile" for mapped files."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Sampler:
    """Samples the RSS of the gateway and of each of its workers every `period` seconds in a
    thread; `peak_kb` is the largest total seen, `gateway_peak_kb` the front end's own."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self.pid = pid
        self.period = period
        self.samples: list[tuple[float, int, int]] = []  # (t, gateway kB, total kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            gw = rss_kb(self.pid)
            total = gw + sum(rss_kb(c) for c in children(self.pid))
            self.samples.append((time.monotonic(), gw, total))
            self._stop.wait(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_kb(self) -> int:
        return max((s[2] for s in self.samples), default=0)

    @property
    def gateway_peak_kb(self) -> int:
        return max((s[1] for s in self.samples), default=0)


@dataclass
class Gateway:
    """`chargegw run` on a fresh data dir and a free loopback port, metrics off (so that runs
    in parallel never clash on its port). A killed worker is noticed at once (the launcher sees
    its process exit); the heartbeats are generous, so that a gateway or worker starved of CPU
    on a loaded machine is not taken for a silent one (a spurious re-registration fails over
    what it held, which is not the fault a scenario injects)."""

    workdir: Path
    workers: int = 2
    extra: str = ""  # TOML appended to the config (sections other than those below)
    worker_extra: str = ""  # keys added to [worker]
    pool_extra: str = ""  # keys added to [pool]
    # Heartbeats of the pool and the workers (generous, see above) and the pool's deadline
    # (0: the default). A scenario about silence itself (a paused worker) shortens them.
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 5.0
    deadline: float = 0.0
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def cfg(self) -> Path:
        return self.workdir / "chargegw.toml"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        return self.workdir / "run.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def worker_pids(self) -> list[int]:
        return children(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> Gateway:
        """Start `chargegw run`; a restart keeps the port and data dir (the previous run's log
        is kept as run.log.1, .2, ...)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        if self.log.exists():
            n = 1
            while self.log.with_name(f"run.log.{n}").exists():
                n += 1
            self.log.rename(self.log.with_name(f"run.log.{n}"))
        hb = (
            f"heartbeat_interval = {self.heartbeat_interval}\n"
            f"heartbeat_timeout = {self.heartbeat_timeout}\n"
        )
        self.cfg.write_text(
            f'data_dir = "{self.data_dir}"\n'
            f'[[listen]]\naddress = "127.0.0.1"\nport = {self.port}\n'
            "[metrics]\nenabled = false\n"
            f"[pool]\n{hb}" + (f"deadline = {self.deadline}\n" if self.deadline else "")
            + self.pool_extra
            + f"[worker]\n{hb}" + self.worker_extra +
            "[launcher]\nrestart_backoff_min = 0.2\ncrash_limit = 0\n" + self.extra
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*CLI, "run", "-c", str(self.cfg), "--workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        end = time.monotonic() + timeout
        while self.output().count("registered (pid") < self.workers or (
            "listening on" not in self.output()
        ):
            if self.proc.poll() is not None or time.monotonic() > end:
                out = self.output()[-3000:]
                self.stop()
                raise RuntimeError(f"chargegw run did not come up:\n{out}")
            time.sleep(0.05)
        # Each join moved shards between the workers (their stores claim them on Assign):
        # a scenario measures its fault, not that start-up rebalancing, so it starts once
        # the rebalancing has had a moment (start-up under load is its own test:
        # tests/hostile/test_hostile_startup.py).
        time.sleep(1.0)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = self.worker_pids()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for k in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(k, signal.SIGKILL)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the money, read as an operator would -----------------------------------------

    def ledger(self) -> dict[str, Any]:
        """`chargegw ledger check --json` of this deployment."""
        out = subprocess.run(
            [*CLI, "ledger", "check", "--json", "-c", str(self.cfg)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        try:
            doc: dict[str, Any] = orjson.loads(out.stdout)
        except orjson.JSONDecodeError:
            raise RuntimeError(f"ledger check failed: {out.stderr[-1000:]}") from None
        return doc

    def debits(self) -> list[tuple[str, int, str, int]]:
        """Every debit in the ledger: (Session-Id, CC-Request-Number, service key, amount).
        The SQLite store is sharded: each worker appends to its own owner file, and ledger
        entries stay where they were written, so every file with a ledger is read."""
        rows: list[tuple[Any, ...]] = []
        for path in sorted(self.data_dir.rglob("*.db")):
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                if not db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='ledger'"
                ).fetchone():
                    continue
                rows += db.execute(
                    "SELECT session, number, key, amount + shortfall FROM ledger"
                    " WHERE kind = 'debit'"
                ).fetchall()
            finally:
                db.close()
        return [(str(s), int(n), str(k), int(a)) for s, n, k, a in rows]

    def double_charges(self) -> list[tuple[str, int, str, int]]:
        """(Session-Id, CC-Request-Number, service, times) charged more than once."""
        seen = Counter((s, n, k) for s, n, k, _ in self.debits())
        return [(s, n, k, c) for (s, n, k), c in seen.items() if c > 1]


def split_cpus() -> tuple[set[int], set[int]] | None:
    """The CPUs this process may use, split in two: (gateway and workers, load generator).
    None with fewer than two. A generator offering twice the gateway's capacity needs about
    as much CPU as the gateway: sharing cores, it takes them from the system it measures,
    whose capacity then shrinks under the very overload being tested (on 2 cores the
    accepted rate fell to a fifth of the measured capacity). Separate cores, as clients on
    other machines would have, measure the gateway's own overload behaviour."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def _on_cpus(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that moves the child to `cpus` (None: leave it where it is)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def run_load(gw: Gateway, out: Path, *args: str, timeout: float = 120.0,
             cpus: set[int] | None = None) -> tuple[int, dict[str, Any], str]:
    """`chargegw load` against the gateway; (exit status, its JSON report, its output)."""
    p = subprocess.run(
        [*CLI, "load", "--port", str(gw.port), "--json", str(out), "--quiet", *args],
        capture_output=True, text=True, timeout=timeout, preexec_fn=_on_cpus(cpus),
    )  # fmt: skip
    report: dict[str, Any] = orjson.loads(out.read_bytes()) if out.exists() else {}
    return p.returncode, report, p.stdout + p.stderr


def popen_logged(argv: list[str]) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start `argv` with its output (stdout and stderr) going to an unnamed temporary file,
    returned with it, not to a pipe: a pipe read only once the child has exited fills at
    64 KiB, and a chatty child then blocks on its next write (a scenario would measure a
    stall of its own making)."""
    log = tempfile.TemporaryFile()
    try:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log
    except BaseException:
        log.close()
        raise


def logged_output(p: subprocess.Popen[bytes], log: IO[bytes], timeout: float) -> str:
    """Everything a `popen_logged` child wrote, once it has exited (TimeoutExpired after
    `timeout`, as `communicate` raises)."""
    p.wait(timeout)
    with log:
        log.seek(0)
        return log.read().decode(errors="replace")


def start_load(gw: Gateway, out: Path, *args: str,
               cpus: set[int] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "load", "--port", str(gw.port), "--json", str(out), "--quiet", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_on_cpus(cpus),
    )  # fmt: skip


# -- a raw Diameter client ------------------------------------------------------------------


class Client(asyncio.Protocol):
    """A peer that speaks just enough of the base protocol (CER, DWA) and otherwise sends raw
    frames and records each answer by hop-by-hop id with its arrival time."""

    def __init__(self, origin_host: str = "rel.localdomain") -> None:
        self.origin_host = origin_host
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.cea: asyncio.Future[Message] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.answers: dict[int, tuple[float, bytes]] = {}
        self.hbh = random.getrandbits(24) << 4
        self.garbage = 0

    @classmethod
    async def connect(cls, port: int, origin_host: str = "rel.localdomain",
                      apps: tuple[int, ...] = (GY,), timeout: float = 10.0,
                      acct: tuple[int, ...] = ()) -> Client:
        loop = asyncio.get_running_loop()
        _t, c = await asyncio.wait_for(
            loop.create_connection(lambda: cls(origin_host), "127.0.0.1", port), timeout)
        cer = CapabilitiesExchangeRequest(
            hop_by_hop=c.next_hbh(), end_to_end=c.next_hbh(), origin_host=origin_host,
            origin_realm="localdomain", host_ip_address=["127.0.0.1"], vendor_id=0,
            product_name="chargegw-reliability", auth_application_id=list(apps),
            supported_vendor_id=[10415], acct_application_id=list(acct) or None,
        )  # fmt: skip
        c.write(cer.encode())
        cea = await asyncio.wait_for(c.cea, timeout)
        rc = cea.get("Result-Code")
        if rc != 2001:
            raise ConnectionError(f"CER refused with {rc}")
        return c

    def next_hbh(self) -> int:
        self.hbh = (self.hbh + 1) & 0xFFFFFFFF
        return self.hbh

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for f in self.waiting.values():
            if not f.done():
                f.set_exception(ConnectionError("closed by the gateway"))
        self.waiting.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.cea.done():
            self.cea.set_exception(ConnectionError("closed before CEA"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        now = time.monotonic()
        while len(buf) >= 20:
            length = _U32.unpack_from(buf, 0)[0] & 0xFFFFFF
            if length < 20 or len(buf) < length:
                if length < 20:
                    self.garbage += 1
                    buf.clear()
                break
            frame = bytes(buf[:length])
            del buf[:length]
            flags, code = frame[4], _U32.unpack_from(frame, 4)[0] & 0xFFFFFF
            hbh = _U32.unpack_from(frame, 12)[0]
            if flags & FLAG_R:  # the gateway's DWR (or DPR): answer it
                self._answer_base(frame, code)
                continue
            if code == 257 and not self.cea.done():
                try:
                    self.cea.set_result(Message.decode(frame))
                except CodecError:
                    self.garbage += 1
                continue
            self.answers[hbh] = (now, frame)
            f = self.waiting.pop(hbh, None)
            if f is not None and not f.done():
                f.set_result(frame)

    def _answer_base(self, frame: bytes, code: int) -> None:
        try:
            req = Message.decode(frame)
        except CodecError:
            return
        ans = req.answer(result_code=2001)
        ans.set("Origin-Host", self.origin_host)
        ans.set("Origin-Realm", "localdomain")
        self.write(ans.encode())

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def expect(self, hbh: int) -> asyncio.Future[bytes]:
        f: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[hbh] = f
        return f

    async def request(self, frame: bytes, timeout: float = 10.0) -> bytes:
        hbh = _U32.unpack_from(frame, 12)[0]
        f = self.expect(hbh)
        self.write(frame)
        return await asyncio.wait_for(f, timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def with_ids(frame: bytes, hbh: int, e2e: int | None = None, retransmit: bool = False) -> bytes:
    b = bytearray(frame)
    _U32.pack_into(b, 12, hbh)
    if e2e is not None:
        _U32.pack_into(b, 16, e2e)
    if retransmit:
        b[4] |= FLAG_T
    return bytes(b)


def ccr(sid: str, rtype: int, number: int, msisdn: str, used: int = 0, requested: int = 0,
        origin_host: str = "rel.localdomain") -> bytes:
    """A Gy CCR through the codec's command class (rating group 100, octets)."""
    mscc: dict[str, Any] = {"rating_group": 100}
    if requested:
        mscc["requested_service_unit"] = {"cc_total_octets": requested}
    if used:
        mscc["used_service_unit"] = [{"cc_total_octets": used}]
    req = CreditControlRequest(
        session_id=sid, origin_host=origin_host, origin_realm="localdomain",
        destination_realm="localdomain", auth_application_id=GY,
        service_context_id="32251@3gpp.org", cc_request_type=rtype, cc_request_number=number,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": msisdn}],
        multiple_services_credit_control=[mscc],
    )  # fmt: skip
    req.hop_by_hop = req.end_to_end = 1
    return req.encode()


def result_code(frame: bytes) -> int:
    """Result-Code or Experimental-Result-Code of an answer; -1 when it has neither."""
    m = Message.decode(frame)
    rc = m.get("Result-Code")
    if rc is None:
        er = m.get("Experimental-Result")
        rc = None if er is None else er.get("Experimental-Result-Code")
    return -1 if rc is None else int(rc)


def answer_essence(frame: bytes) -> tuple[Any, ...]:
    """What must be identical in an answer replayed for a retransmission: the end-to-end id,
    Result-Code, CC-Request-Number and every MSCC (grants, results) as the OCS wrote them."""
    m = Message.decode(frame)
    mscc = m.raw_values("Multiple-Services-Credit-Control")
    return (_U32.unpack_from(frame, 16)[0], m.get("Result-Code"), m.get("CC-Request-Number"),
            tuple(mscc))


# -- results --------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    faults: int = 0
    offered: int = 0
    answered: int = 0
    lost: int = 0
    double_charges: int = 0
    ledger_ok: bool | None = None
    ledger_diff_micro: int | None = None
    peak_rss_kb: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _money_diff(money: dict[str, Any] | None) -> int | None:
    """Distance of the ledger's rated change from the range the usage reports allow (0 in it)."""
    if not money or "rated_delta_micro" not in money:
        return None
    d, lo, hi = (money["rated_delta_micro"], money["expected"]["low_micro"],
                 money["expected"]["high_micro"])
    return 0 if lo <= d <= hi else (lo - d if d < lo else d - hi)


def _check_money(res: Result, rep: dict[str, Any]) -> None:
    """The generator's money check (`--verify-ledger`): the ledger reconciles, and what it
    rated is within what the usage the generator reported should cost."""
    money = rep.get("money") or {}
    res.ledger_diff_micro = _money_diff(money)
    res.ledger_ok = bool(money.get("ledger_ok"))
    res.check(res.ledger_ok, f"ledger check failed: {money.get('ledger_problems')}")
    res.check(res.ledger_diff_micro == 0,
              f"ledger rated {money.get('rated_delta_micro')} outside the usage reported "
              f"{money.get('expected', {}).get('low_micro')}.."
              f"{money.get('expected', {}).get('high_micro')}")


def _load_into(res: Result, rep: dict[str, Any], timeout: float, drops: bool = False,
               ) -> dict[str, Any]:
    """Fold a load report into a result; every request must be answered within `timeout`.
    `drops`: the scenario closes the generator's connections itself (it reconnects)."""
    s: dict[str, Any] = rep.get("summary") or {}
    res.offered += s.get("sent", 0)
    res.answered += s.get("answered", 0)
    res.lost += s.get("timeouts", 0) + s.get("lost", 0)
    res.check(s.get("sent", 0) > 0, "the load generator sent nothing")
    res.check(s.get("timeouts", 0) == 0, f"{s.get('timeouts')} requests not answered in {timeout} s")
    res.check(s.get("lost", 0) == 0, f"{s.get('lost')} requests lost (connection closed)")
    res.check(s.get("mismatches", 0) == 0, f"{s.get('mismatches')} answers did not match")
    res.check(drops or not s.get("connections", {}).get("closed_by_server"),
              "the gateway closed a peer")
    return s


# -- 1. worker crash --------------------------------------------------------------------------


def worker_crash(workdir: Path, duration: float = 12.0, every: float = 3.0, workers: int = 2,
                 concurrency: int = 20) -> Result:
    """SIGKILL one worker every `every` seconds while `chargegw load` runs Gy I/U/T sessions.
    Every request must be answered before the client's timeout (the pool deadline plus a
    margin) with 2001 or an RFC transient error, the ledger must reconcile and match the usage
    reported, and no CC-Request-Number may be debited twice."""
    res = Result("worker_crash")
    t0 = time.monotonic()
    timeout = 6.0  # the pool deadline is 4 s: an answer later than this is a lost request
    with Gateway(workdir, workers=workers) as gw, Sampler(gw.pid) as smp:
        out = workdir / "load.json"
        load, load_log = popen_logged(
            [*CLI, "load", "--port", str(gw.port), "--json", str(out), "--quiet",
             "--duration", str(duration), "--concurrency", str(concurrency), "--updates", "2",
             "--subscribers", "200", "--timeout", str(timeout), "--max-error-rate", "1",
             "--verify-ledger", "--ledger-config", str(gw.cfg)],
        )  # fmt: skip
        killed: list[int] = []
        started = time.monotonic()
        next_kill = started + 2.0  # the generator's ledger snapshot and CER come first
        while load.poll() is None and time.monotonic() < started + duration + 90:
            if next_kill <= time.monotonic() < started + duration:
                pids = [p for p in gw.worker_pids() if p not in killed]
                if pids:
                    victim = random.Random(len(killed)).choice(pids)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                        killed.append(victim)
                next_kill += every
            time.sleep(0.05)
        text = logged_output(load, load_log, timeout=120)
        res.faults = len(killed)
        rep = orjson.loads(out.read_bytes()) if out.exists() else {}
        s = _load_into(res, rep, timeout)
        codes = {int(k): v for k, v in s.get("result_codes", {}).items()}
        bad = {k: v for k, v in codes.items() if k != 2001 and k not in RFC_TRANSIENT}
        res.check(not bad, f"answers other than 2001 or 3002/3004: {bad}")
        res.check(codes.get(2001, 0) > 0, "no request was answered 2001")
        _check_money(res, rep)
        dup = gw.double_charges()
        res.double_charges = len(dup)
        res.check(not dup, f"charged twice: {dup[:5]}")
        res.check(gw.alive(), "chargegw run died")
        res.check(res.faults >= max(1, int(duration / every) - 1),
                  f"only {res.faults} workers were killed")
        res.details = {"killed": killed, "result_codes": codes, "load_output": text[-1500:],
                       "max_ms": (s.get("latency_ms") or {}).get("max")}
        res.peak_rss_kb = smp.peak_kb
    res.seconds = round(time.monotonic() - t0, 1)
    return res


# -- 2. retransmissions ------------------------------------------------------------------------


async def _retransmissions(gw: Gateway, res: Result) -> None:
    msisdn = "4670000000042"
    sid = f"rel.localdomain;{int(time.time())};retx"
    used = 1_000_000
    a = await Client.connect(gw.port)
    b: Client | None = None
    try:
        steps = [(1, 0, 0, 1_000_000), (2, 1, used, 1_000_000), (3, 2, used, 0)]
        for rtype, number, u, req_units in steps:
            frame = ccr(sid, rtype, number, msisdn, used=u, requested=req_units)
            first = with_ids(frame, a.next_hbh(), 0x5000_0000 + number)
            hbh = _U32.unpack_from(first, 12)[0]
            # the original and its T-flagged duplicate leave in one write: the duplicate
            # arrives while the original is still being charged
            f1 = a.expect(hbh)
            a.write(first + with_ids(first, hbh, None, retransmit=True))
            ans1 = await asyncio.wait_for(f1, 10)
            # the duplicate again once answered, on the same connection
            again = await a.request(with_ids(first, a.next_hbh(), None, retransmit=True))
            # the client fails over: the connection is gone, the same peer reconnects and
            # resends with the T flag (same end-to-end id, new hop-by-hop) ...
            a.close()
            await asyncio.wait_for(a.closed, 5)
            b = await Client.connect(gw.port)
            other = await b.request(with_ids(first, b.next_hbh(), None, retransmit=True))
            # ... and once more without it, as a client that lost its state would
            plain = await b.request(with_ids(first, b.next_hbh(), 0x6000_0000 + number))
            res.offered += 5
            res.answered += 4
            rc = result_code(ans1)
            res.check(rc == 2001, f"CCR type {rtype} answered {rc}")
            want = answer_essence(ans1)
            for label, ans in (("T-flag duplicate", again), ("failover duplicate", other),
                               ("plain resend", plain)):
                res.faults += 1
                got = answer_essence(ans)
                res.check(got[1:] == want[1:],
                          f"CCR type {rtype}: the {label} got {got[1:]} where the original "
                          f"got {want[1:]}")
            a = b
    finally:
        a.close()
    res.details["session"] = sid


def retransmissions(workdir: Path, workers: int = 2) -> Result:
    """T-flagged duplicates (in flight, after the answer, over a second connection) and a
    plain resend of each of CCR-I/U/T: each gets the original's answer, and the ledger holds
    exactly one debit per CC-Request-Number with the money the two usage reports cost."""
    res = Result("retransmissions")
    t0 = time.monotonic()
    with Gateway(workdir, workers=workers) as gw, Sampler(gw.pid) as smp:
        before = gw.ledger()
        asyncio.run(_retransmissions(gw, res))
        after = gw.ledger()
        debits = [d for d in gw.debits() if d[0] == res.details.get("session")]
        res.check(sorted(n for _, n, _k, _a in debits) == [1, 2],
                  f"expected one debit for CC-Request-Number 1 and 2, ledger has {debits}")
        dup = gw.double_charges()
        res.double_charges = len(dup)
        res.check(not dup, f"charged twice: {dup}")
        res.ledger_ok = bool(after.get("ok"))
        res.check(res.ledger_ok, f"ledger check failed: {after.get('problems')}")
        from . import money  # noqa: PLC0415

        tariffs = money.tariffs_from_config(str(gw.cfg))
        price, unit = tariffs[100]
        expected = 2 * (-(-1_000_000 // unit) * price)
        delta = int(after["rated"]) - int(before["rated"])
        res.ledger_diff_micro = delta - expected
        res.check(delta == expected, f"ledger rated {delta}, the two reports cost {expected}")
        res.check(gw.alive(), "chargegw run died")
        res.peak_rss_kb = smp.peak_kb
    res.seconds = round(time.monotonic() - t0, 1)
    return res


# -- 4. slow reader ----------------------------------------------------------------------------


async def _slow_reader(port: int, seconds: float, stats: dict[str, Any]) -> None:
    """A peer that writes requests as fast as the socket takes them and never reads."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        cer = CapabilitiesExchangeRequest(
            hop_by_hop=1, end_to_end=1, origin_host="slow.localdomain",
            origin_realm="localdomain", host_ip_address=["127.0.0.1"], vendor_id=0,
            product_name="slow", auth_application_id=[GY], supported_vendor_id=[10415],
        )  # fmt: skip
        sock.sendall(cer.encode())
        sock.settimeout(5)
        sock.recv(4096)  # the CEA; from here on nothing is read
        sock.setblocking(False)
        base = ccr("slow.localdomain;1;x", 1, 0, "4670000000999", requested=1000,
                   origin_host="slow.localdomain")
        # one session's CCR-I over and over (fresh ids): after the first, each is a resend
        # the OCS answers from what it stored, so the flood costs no money
        bad = bytearray(base)
        sent = 0
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            i += 1
            _U32.pack_into(bad, 12, i)
            _U32.pack_into(bad, 16, i)
            try:
                sock.send(bytes(bad))
                sent += 1
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                stats["closed_by_gateway"] = True
                break
            if i % 64 == 0:
                await asyncio.sleep(0)
        stats["sent"] = sent
    finally:
        sock.close()


def slow_reader(workdir: Path, seconds: float = 8.0, rss_limit_mb: float = 200.0) -> Result:
    """A peer floods Gy requests and never reads its answers, while a good peer runs load.
    The gateway's RSS must stay within `rss_limit_mb` of where it started, and the good peer
    must see no error, timeout or loss."""
    res = Result("slow_reader", faults=1)
    t0 = time.monotonic()
    with Gateway(workdir, workers=2) as gw:
        base_kb = rss_kb(gw.pid)
        with Sampler(gw.pid) as smp:
            out = workdir / "good.json"
            good = start_load(gw, out, "--duration", str(seconds), "--concurrency", "10",
                              "--timeout", "5", "--subscribers", "100")
            stats: dict[str, Any] = {}
            asyncio.run(_slow_reader(gw.port, seconds, stats))
            good.wait(60)
        rep = orjson.loads(out.read_bytes()) if out.exists() else {}
        s = _load_into(res, rep, 5.0)
        res.check(s.get("errors", 0) == 0, f"the good peer got {s.get('errors')} errors")
        growth_mb = (smp.gateway_peak_kb - base_kb) / 1024
        res.check(growth_mb <= rss_limit_mb,
                  f"gateway RSS grew {growth_mb:.0f} MB (limit {rss_limit_mb:.0f})")
        res.check(gw.alive(), "chargegw run died")
        res.peak_rss_kb = smp.peak_kb
        res.details = {"slow_peer_sent": stats.get("sent"), "gateway_base_kb": base_kb,
                       "gateway_peak_kb": smp.gateway_peak_kb,
                       "closed_by_gateway": stats.get("closed_by_gateway", False),
                       "good_p99_ms": (s.get("latency_ms") or {}).get("p99")}
    res.seconds = round(time.monotonic() - t0, 1)
    return res


# -- 5. connection flood -----------------------------------------------------------------------


def _p99(rep: dict[str, Any]) -> float:
    return float(((rep.get("summary") or {}).get("latency_ms") or {}).get("p99") or 0.0)


def connection_flood(workdir: Path, connections: int = 1000, hold: float = 4.0,
                     rss_limit_mb: float = 100.0) -> Result:
    """`connections` TCP connections opened to the gateway from as many loopback source
    addresses and held (half idle, half after sending half a CER) while a connected good peer
    runs `chargegw load` and a prober measures latency. The gateway's RSS must stay bounded,
    the good peer must see no error, and the prober's p99 during the flood must stay within 5x
    (or 50 ms) of its p99 before it. Once the flood is gone a new peer must get in."""
    import resource  # noqa: PLC0415

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = max(10, min(connections, soft // 2 - 64))
    res = Result("connection_flood", faults=n)
    t0 = time.monotonic()
    with Gateway(workdir, workers=1) as gw:
        base_kb = rss_kb(gw.pid)
        out = workdir / "good.json"
        load = start_load(gw, out, "--duration", str(3 * hold + 3), "--concurrency", "5",
                          "--subscribers", "50", "--timeout", "5")
        half_cer = CapabilitiesExchangeRequest(
            hop_by_hop=1, end_to_end=1, origin_host="flood.localdomain",
            origin_realm="localdomain", host_ip_address=["127.0.0.1"], vendor_id=0,
            product_name="flood", auth_application_id=[GY],
        ).encode()  # fmt: skip
        samples: list[tuple[float, float, int]] = []
        window: dict[str, float] = {}
        info: dict[str, int] = {"refused": 0, "open_at_end": 0}

        def flood() -> None:
            time.sleep(hold)
            socks: list[socket.socket] = []
            window["start"] = time.monotonic()
            for i in range(n):
                try:
                    s = socket.socket()
                    s.bind((f"127.1.{i // 250}.{i % 250 + 1}", 0))
                    s.settimeout(2)
                    s.connect(("127.0.0.1", gw.port))
                except OSError:
                    info["refused"] += 1
                    s.close()
                    continue
                if i % 2:
                    with contextlib.suppress(OSError):
                        s.sendall(half_cer[: len(half_cer) // 2])
                socks.append(s)
            window["opened"] = time.monotonic()
            time.sleep(hold)
            for s in socks:
                try:
                    s.setblocking(False)
                    info["open_at_end"] += s.recv(1) != b""
                except BlockingIOError:
                    info["open_at_end"] += 1
                except OSError:
                    pass
                s.close()
            window["end"] = time.monotonic()

        with Sampler(gw.pid) as smp:
            th = threading.Thread(target=flood)
            time.sleep(1.5)  # the generator connected before the flood
            th.start()
            asyncio.run(_probe(gw.port, 3 * hold, 50.0, samples))
            th.join()
            load.wait(60)

        async def newcomer() -> bool:
            try:
                c = await Client.connect(gw.port, origin_host="late.localdomain")
            except (OSError, TimeoutError):
                return False
            c.close()
            return True

        late_ok = asyncio.run(newcomer())
        rep = orjson.loads(out.read_bytes()) if out.exists() else {}
        s_good = _load_into(res, rep, 5.0)
        res.check(s_good.get("errors", 0) == 0,
                  f"the good peer got {s_good.get('errors')} errors during the flood")
        before = [ms for t, ms, _ in samples if t < window.get("start", 0)]
        during = [ms for t, ms, _ in samples if window.get("start", 0) <= t < window.get("end", 0)]
        lost = [x for x in samples if x[2] != 2001]
        res.check(not lost, f"the prober got {len(lost)} requests not answered 2001")
        res.check(bool(before) and bool(during), "the prober did not cover the flood")
        p_before, p_during = _pct(before, 99), _pct(during, 99)
        res.check(p_during <= max(5 * p_before, 50.0),
                  f"prober p99 {p_during} ms during the flood, {p_before} ms before")
        growth_mb = (smp.gateway_peak_kb - base_kb) / 1024
        res.check(growth_mb <= rss_limit_mb,
                  f"gateway RSS grew {growth_mb:.0f} MB under {n} connections")
        res.check(late_ok, "a new peer could not connect after the flood")
        res.check(gw.alive(), "chargegw run died")
        res.peak_rss_kb = smp.peak_kb
        res.details = {"connections": n, "connect_refused": info["refused"],
                       "flood_open_at_end": info["open_at_end"],
                       "open_seconds": round(window.get("opened", 0) - window.get("start", 0), 2),
                       "probe_p99_before_ms": p_before, "probe_p99_during_ms": p_during,
                       "probe_n": len(samples), "gateway_growth_mb": round(growth_mb, 1)}
    res.seconds = round(time.monotonic() - t0, 1)
    return res


# -- 6. overload ---------------------------------------------------------------------------------


async def _probe(port: int, seconds: float, rate: float, samples: list[tuple[float, float, int]],
                 origin_host: str = "probe.localdomain") -> None:
    """A modest open-loop CCR-EVENT prober (price enquiry: no money moves) that keeps each
    request's (send time, latency ms, Result-Code; -1 when unanswered in 8 s), so 3004s and
    accepted answers, or the seconds before and during a fault, are measured apart."""
    c = await Client.connect(port, origin_host=origin_host)
    tasks = []
    try:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            i += 1
            req = CreditControlRequest(
                session_id=f"{origin_host};{os.getpid()};{i}",
                origin_host=origin_host, origin_realm="localdomain",
                destination_realm="localdomain", auth_application_id=GY,
                service_context_id="32251@3gpp.org", cc_request_type=4, cc_request_number=0,
                requested_action=3,
                subscription_id=[{"subscription_id_type": 0,
                                  "subscription_id_data": "4670000000777"}],
                multiple_services_credit_control=[
                    {"rating_group": 100, "requested_service_unit": {"cc_total_octets": 1}}],
            )  # fmt: skip
            req.hop_by_hop = req.end_to_end = c.next_hbh()
            frame = req.encode()

            async def one(f: bytes = frame) -> None:
                t = time.monotonic()
                try:
                    ans = await c.request(f, 8.0)
                except (TimeoutError, ConnectionError):
                    samples.append((t, 8000.0, -1))
                    return
                samples.append((t, (time.monotonic() - t) * 1000, result_code(ans)))

            tasks.append(asyncio.ensure_future(one()))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    finally:
        c.close()


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    ys = sorted(xs)
    return round(ys[min(len(ys) - 1, int(p / 100 * len(ys)))], 3)


def _capacity(gw: Gateway, workdir: Path, cpus: set[int] | None) -> float:
    """Answers a second at 80 in flight, closed loop: that saturates the worker and stays
    under the fair share of one peer (3/4 of the credit, 96 at 128): a capacity run that
    sheds measures the shedding."""
    _rc, cap, _ = run_load(gw, workdir / "capacity.json", "--scenario", "gy-event",
                           "--requested-action", "3", "--duration", "3",
                           "--concurrency", "80", "--subscribers", "100", cpus=cpus)
    return float((cap.get("summary") or {}).get("answers_per_s") or 0.0)


# Sessions a second one generator process is given in an overload run: ~0.2 of a core at the
# generator's ~40 us per request, so its loop is mostly idle and stamps answers as they come.
RATE_PER_GENERATOR = 5000.0


def generator_processes(rate: float, cpus: set[int] | None) -> int:
    """`chargegw load --processes` for an open-loop offer of `rate` on `cpus` (None: unpinned,
    one process). At twice a many-core gateway's capacity (20,000/s or more) one process
    would spend most of a core sending and reading, and a saturated loop stamps each answer
    late: its percentiles would then measure the generator, not the gateway's 3004s."""
    if not cpus:
        return 1
    return max(1, min(len(cpus), math.ceil(rate / RATE_PER_GENERATOR)))


def overload(workdir: Path, seconds: float = 6.0, factor: float = 2.0, workers: int = 1,
             credit: int = 128, busy_p99_ms: float = 50.0, ok_p99_ms: float = 500.0,
             rss_limit_mb: float = 150.0, min_goodput: float = 0.5,
             pin: bool = True, doic: bool = False, latency_target_ms: float = 0.0,
             processes: int = 0) -> Result:
    """Measure the gateway's capacity (closed loop), then offer `factor` times it open loop
    with `chargegw load` while a prober measures latency per Result-Code. The excess must get
    3004 quickly (the generator's and the prober's 3004 p99 under `busy_p99_ms`), accepted
    requests' p99 (both again) must stay under `ok_p99_ms`, the accepted rate must stay at `min_goodput` of the capacity or more
    (shedding must not starve the work it protects), nothing may time out and the
    gateway's RSS must stay bounded.

    With `pin` (and two CPUs or more, `split_cpus`) the gateway, its workers and the prober
    run on one half of the CPUs and the load generator on the other, for the capacity run
    and the overload alike; the overload's generator runs as `generator_processes` processes
    there (one on two CPUs; `processes` sets the number), each its own peer.

    With `doic` the generator is a DOIC reacting node (`chargegw load --doic`): the gateway's
    overload reports must then take the excess off the wire at its source, so at least half
    of the excess (1 - 1/factor of the session starts) must be abated there, and 3004s are
    no longer required (those of the first second, before a report, are judged as before).

    `credit` is at least the pool's FAIR_MIN_CREDIT (128; the worker's default is 256): below
    it the pool keeps no slots for the peers that are not flooding, and the prober, whose
    requests arrive while the flood's backlog refills every freed slot in the same turn, could
    see nothing but 3004 (this test failed that way now and then with 64).

    With `latency_target_ms` the gateway under overload has that `pool.latency_target_ms`
    (gateway/latency.py): each worker holds only what it answers in that time. The capacity
    is then measured first on a gateway without it, because a closed-loop client that sends
    again the moment it gets a 3004 turns a tight limit into a storm of 3004s (the capacity
    run's own measure would be of that storm)."""
    res = Result("overload_slo" if latency_target_ms else "overload_doic" if doic else "overload")
    t0 = time.monotonic()
    cpus = split_cpus() if pin else None
    mine = os.sched_getaffinity(0) if cpus else None
    if cpus:
        os.sched_setaffinity(0, cpus[0])  # the prober here; the gateway and workers inherit
    gen = cpus[1] if cpus else None
    extra = f"credit = {credit}\n"
    try:
        capacity = 0.0
        if latency_target_ms:
            with Gateway(workdir / "capacity", workers=workers, worker_extra=extra) as gw:
                capacity = _capacity(gw, workdir, gen)
        with Gateway(workdir, workers=workers, worker_extra=extra,
                     pool_extra=f"latency_target_ms = {latency_target_ms}\n") as gw:
            if not latency_target_ms:
                capacity = _capacity(gw, workdir, gen)
            res.check(capacity > 0, "could not measure the capacity")
            rate = max(100.0, capacity * factor)
            procs = processes or generator_processes(rate, gen)
            base_kb = rss_kb(gw.pid)
            samples: list[tuple[float, float, int]] = []
            with Sampler(gw.pid) as smp:
                out = workdir / "overload.json"
                load = start_load(gw, out, "--scenario", "gy-event", "--requested-action", "3",
                                  "--rate", str(rate), "--duration", str(seconds),
                                  "--subscribers", "100", "--timeout", "8",
                                  "--max-error-rate", "1", "--processes", str(procs),
                                  *(["--doic"] if doic else []), cpus=gen)
                time.sleep(0.5)
                asyncio.run(_probe(gw.port, seconds - 1.0, 50.0, samples))
                load.wait(120)
            growth_mb = (smp.gateway_peak_kb - base_kb) / 1024
            res.check(gw.alive(), "chargegw run died")
            res.peak_rss_kb = smp.peak_kb
    finally:
        if mine:
            os.sched_setaffinity(0, mine)
    lat: dict[int, list[float]] = {}
    for _t, ms, rc in samples:
        lat.setdefault(rc, []).append(ms)
    rep = orjson.loads(out.read_bytes()) if out.exists() else {}
    s = _load_into(res, rep, 8.0)
    codes = {int(k): v for k, v in s.get("result_codes", {}).items()}
    res.faults = codes.get(int(ResultCode.DIAMETER_TOO_BUSY), 0)
    abated = int(s.get("abated") or 0)
    starts = abated + int(s.get("sessions_started") or 0)
    abated_share = abated / starts if starts else 0.0
    if doic:
        res.faults += abated  # the excess a report removed is an overload the gateway met
        res.check(abated_share >= 0.5 * (1 - 1 / factor),
                  f"the reacting node abated {abated_share:.0%} of its session starts at"
                  f" {factor}x capacity (at least {0.5 * (1 - 1 / factor):.0%} expected)")
    else:
        res.check(res.faults > 0, f"no 3004 at {factor}x capacity: {codes}")
    bad = {k: v for k, v in codes.items() if k not in (2001, 3004, 3002)}
    res.check(not bad, f"answers other than 2001/3004/3002: {bad}")
    busy, ok = lat.get(3004, []), lat.get(2001, [])
    res.check(bool(ok), "the prober got no request accepted")
    res.check(-1 not in lat, f"the prober lost {len(lat.get(-1, []))} requests")
    # Both sides' figures: the prober's (a well-behaved peer beside the flood, which the
    # fair share mostly spares a 3004) and the generator's (the flood, whose excess is what
    # must get its 3004 quickly).
    by = s.get("latency_ms_by_result") or {}
    gen_busy = float((by.get("3004") or {}).get("p99") or 0.0)
    gen_ok = float((by.get("2001") or {}).get("p99") or 0.0)
    res.check(max(_pct(busy, 99), gen_busy) <= busy_p99_ms,
              f"3004 p99 {max(_pct(busy, 99), gen_busy)} ms > {busy_p99_ms} ms"
              f" (prober {_pct(busy, 99)}, generator {gen_busy})")
    res.check(max(_pct(ok, 99), gen_ok) <= ok_p99_ms,
              f"accepted p99 {max(_pct(ok, 99), gen_ok)} ms > {ok_p99_ms} ms"
              f" (prober {_pct(ok, 99)}, generator {gen_ok})")
    elapsed = float(s.get("elapsed_s") or 0.0)
    accepted = codes.get(2001, 0) / elapsed if elapsed else 0.0
    goodput = accepted / capacity if capacity else 0.0
    res.check(goodput >= min_goodput,
              f"accepted {accepted:.0f}/s under overload, {goodput:.0%} of the capacity"
              f" ({capacity:.0f}/s; at least {min_goodput:.0%} expected)")
    res.check(growth_mb <= rss_limit_mb, f"gateway RSS grew {growth_mb:.0f} MB")
    res.details = {
        "capacity_per_s": capacity, "offered_rate": rate,
        "answers_per_s": s.get("answers_per_s"), "result_codes": codes,
        "accepted_per_s": round(accepted, 1), "goodput": round(goodput, 3),
        "abated": abated, "abated_share": round(abated_share, 3),
        "cpus": {"gateway": sorted(cpus[0]), "generator": sorted(cpus[1])} if cpus else None,
        "generator_processes": procs,
        "latency_target_ms": latency_target_ms,
        "probe": {str(k): {"n": len(v), "p50_ms": _pct(v, 50), "p99_ms": _pct(v, 99),
                           "max_ms": _pct(v, 100)} for k, v in lat.items()},
        "load_p99_ms": (s.get("latency_ms") or {}).get("p99"),
        "load_by_result": {k: {"p50_ms": v.get("p50"), "p99_ms": v.get("p99")}
                           for k, v in by.items()},
        "gateway_growth_mb": round(growth_mb, 1),
    }
    res.seconds = round(time.monotonic() - t0, 1)
    return res


# -- gateway restart ------------------------------------------------------------------------------

# Gy sessions (money checked against the ledger) and Rf sessions (CDRs checked against the
# store); gy-event's direct debiting is left out: the money check cannot price it.
_RESTART_UPDATES = 2  # ACR numbers 0 (START) .. 3 (STOP)
_RESTART_SCENARIO = f"""
[scenario]
kind = "mix"
updates = {_RESTART_UPDATES}
[[scenario.flows]]
kind = "gy"
weight = 50
[[scenario.flows]]
kind = "rf"
weight = 50
"""


def cdr_counts(gw: Gateway) -> dict[tuple[str, int], list[bool]]:
    """(Session-Id, Accounting-Record-Number) -> the `retransmit` flag of each copy stored (one
    copy: the flag says whether it was a T-flagged request that got it stored), read with
    `chargegw cdr export` as an operator would."""
    out = subprocess.run(
        [*CLI, "cdr", "export", "--format", "jsonl", "-c", str(gw.cfg)],
        capture_output=True, timeout=120,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"cdr export failed: {out.stderr.decode(errors='replace')[-1000:]}")
    seen: dict[tuple[str, int], list[bool]] = {}
    for line in out.stdout.splitlines():
        if line.strip():
            r = orjson.loads(line)
            key = (str(r["session_id"]), int(r["record_number"]))
            seen.setdefault(key, []).append(bool(r.get("retransmit")))
    return seen


RF = 3


async def _replay_acrs(port: int, keys: list[tuple[str, int]], last: int) -> list[int]:
    """Send ACRs again, T-flagged, as a client that lost their answers would: the same
    Session-Id and Accounting-Record-Number (record 0 START, `last` STOP, else INTERIM).
    Returns their Result-Codes."""
    c = await Client.connect(port, "replay.localdomain", apps=(), acct=(RF,))
    try:
        codes = []
        for sid, n in keys:
            acr = AccountingRequest(
                hop_by_hop=c.next_hbh(), end_to_end=c.next_hbh(), session_id=sid,
                origin_host="replay.localdomain", origin_realm="localdomain",
                destination_realm="localdomain", accounting_record_type=(
                    2 if n == 0 else 4 if n == last else 3),
                accounting_record_number=n, acct_application_id=RF,
            )  # fmt: skip
            frame = with_ids(acr.encode(), c.next_hbh(), retransmit=True)
            codes.append(result_code(await c.request(frame)))
        return codes
    finally:
        c.close()


def established(port: int) -> int:
    """TCP connections established to this local port (loopback, from /proc/net/tcp)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if len(f) > 3 and f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    n += 1
    return n


def _kill_gateway(gw: Gateway, sig: signal.Signals, wait: float = 20.0,
                  stall: float = 0.0) -> dict[str, Any]:
    """Send `sig` to the gateway process alone, as a crash (SIGKILL) or an operator's stop
    (SIGTERM) does; its workers must then go by themselves (orphans are killed after `wait`
    seconds and reported: they would hold the port's work and the stores). `stall`: first
    freeze the front end (SIGSTOP) that long, as a hang before a watchdog's kill: the workers
    commit what they hold and their answers die with it, the worst case for duplicates."""
    assert gw.proc is not None
    kids = gw.worker_pids()
    if stall > 0:
        gw.proc.send_signal(signal.SIGSTOP)
        time.sleep(stall)
    gw.proc.send_signal(sig)
    try:
        gw.proc.wait(wait)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        gw.proc.wait()
    end = time.monotonic() + wait
    while time.monotonic() < end and any(Path(f"/proc/{k}").exists() for k in kids):
        time.sleep(0.05)
    left = [k for k in kids if Path(f"/proc/{k}").exists()]
    for k in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(k, signal.SIGKILL)
    return {"gateway": gw.pid, "signal": sig.name, "workers": kids, "workers_left": left}


def gateway_restart(workdir: Path, sig: signal.Signals = signal.SIGKILL, restarts: int = 1,
                    duration: float = 10.0, concurrency: int = 20, workers: int = 2,
                    connections: int = 2, reconnect: float = 60.0, stall: float = 0.5,
                    ) -> Result:
    """Kill the gateway (`sig`) mid-run and start it again on the same data dir and port,
    `restarts` times, while `chargegw load --reconnect` runs Gy and Rf sessions. The generator
    must reconnect and finish with every request answered (its unanswered ones resent with
    the T flag); every ACR answered 2001 must be in the CDR store exactly once; the ledger must
    reconcile and match the usage reported; no CC-Request-Number may be debited twice. A
    SIGKILL comes after a `stall` (SIGSTOP) of the front end, so that records are committed
    whose answers never leave: their resends must be recognised as duplicates."""
    name = "gateway_restart" if sig == signal.SIGKILL else f"gateway_restart_{sig.name.lower()}"
    res = Result(name)
    t0 = time.monotonic()
    timeout = 10.0  # per request in flight; an outage does not count (not in flight)
    workdir.mkdir(parents=True, exist_ok=True)
    scn = workdir / "scenario.toml"
    scn.write_text(_RESTART_SCENARIO)
    out, record = workdir / "load.json", workdir / "acked.jsonl"
    gw = Gateway(workdir, workers=workers)
    load: subprocess.Popen[bytes] | None = None
    load_log: IO[bytes] | None = None
    peaks: list[int] = []
    kills: list[dict[str, Any]] = []
    try:
        gw.start()
        load, load_log = popen_logged(
            [*CLI, "load", "--port", str(gw.port), "--json", str(out), "--quiet",
             "--scenario", str(scn), "--duration", str(duration),
             "--concurrency", str(concurrency), "--connections", str(connections),
             "--subscribers", "200", "--timeout", str(timeout), "--max-error-rate", "1",
             "--reconnect", str(reconnect), "--record", str(record), "--seed", "14",
             "--verify-ledger", "--ledger-config", str(gw.cfg)],
        )  # fmt: skip
        # the run starts once the generator is connected (its ledger snapshot comes first)
        end = time.monotonic() + 60
        while (established(gw.port) < connections and load.poll() is None
               and time.monotonic() < end):
            time.sleep(0.05)
        started = time.monotonic()
        for k in range(restarts):  # spread over the run
            at = started + 2.0 + k * max(1.0, (duration - 3.0) / restarts)
            with Sampler(gw.pid) as smp:
                while time.monotonic() < at and load.poll() is None:
                    time.sleep(0.05)
            peaks.append(smp.peak_kb)
            if load.poll() is not None:
                break
            kills.append(_kill_gateway(gw, sig, stall=stall if sig == signal.SIGKILL else 0.0))
            gw.start()
        with Sampler(gw.pid) as smp:
            text = logged_output(load, load_log, timeout=duration + reconnect + 120)
        peaks.append(smp.peak_kb)
        res.faults = len(kills)
        rep = orjson.loads(out.read_bytes()) if out.exists() else {}
        s = _load_into(res, rep, timeout, drops=True)
        res.check(load.returncode == 0, f"chargegw load exited {load.returncode}")
        codes = {int(k): v for k, v in s.get("result_codes", {}).items()}
        bad = {k: v for k, v in codes.items() if k != 2001 and k not in RFC_TRANSIENT}
        res.check(not bad, f"answers other than 2001 or 3002/3004: {bad}")
        res.check(res.faults == restarts, f"only {res.faults} of {restarts} restarts happened")
        res.check(s.get("reconnects", 0) >= res.faults * connections,
                  f"{s.get('reconnects')} reconnects for {res.faults} restarts of "
                  f"{connections} connections")
        # every ACR answered 2001: in the CDR store exactly once
        rows = [orjson.loads(line) for line in record.read_bytes().splitlines() if line]
        acked = [(str(r["session_id"]), int(r["record_number"])) for r in rows]
        twice_acked = [k for k, n in Counter(acked).items() if n > 1]
        res.check(not twice_acked, f"the generator recorded ACRs twice: {twice_acked[:5]}")
        stored = cdr_counts(gw)
        missing = [k for k in set(acked) if not stored.get(k)]
        dup_cdrs = [(k, len(v)) for k, v in stored.items() if len(v) > 1]
        # ACRs answered only after a T-flagged resend: stored by their first copy (the resend
        # was recognised as a duplicate) or by the resend itself (the first never got there)
        resent = [k for k, r in zip(acked, rows, strict=True) if r.get("resent")]
        resend_was_dup = sum(1 for k in resent if stored.get(k) == [False])
        resend_stored = sum(1 for k in resent if stored.get(k) == [True])
        res.check(len(acked) > 0, "no ACR was answered 2001")
        res.check(not missing, f"{len(missing)} ACRs answered 2001 are not in the CDR store: "
                               f"{missing[:5]}")
        res.check(not dup_cdrs, f"CDRs stored more than once: {dup_cdrs[:5]}")
        res.lost += len(missing)
        # ACRs answered before the restart, sent again after it (T flag): each must be
        # answered 2001 and recognised as a duplicate by the restarted CDR store
        replay = list(dict.fromkeys(acked))[:20]
        replay_codes = asyncio.run(_replay_acrs(gw.port, replay, last=_RESTART_UPDATES + 1))
        res.check(replay_codes == [2001] * len(replay),
                  f"ACRs resent after the restart answered {Counter(replay_codes)}, not 2001")
        after = cdr_counts(gw)
        res.check(all(len(after.get(k, [])) == 1 for k in replay),
                  "an ACR resent after the restart was stored a second time")
        res.check(len(after) == len(stored), f"the replay changed the CDR count "
                                             f"({len(stored)} -> {len(after)})")
        # the money: the ledger reconciles and matches the usage, nothing debited twice
        _check_money(res, rep)
        dup = gw.double_charges()
        res.double_charges = len(dup) + len(dup_cdrs)
        res.check(not dup, f"charged twice: {dup[:5]}")
        res.check(gw.alive(), "chargegw run died after its restart")
        res.details = {
            "kills": kills, "result_codes": codes, "reconnects": s.get("reconnects"),
            "resent": s.get("resent"), "acked_acrs": len(acked), "cdrs_stored": len(stored),
            "acked_after_resend": len(resent), "resend_was_duplicate": resend_was_dup,
            "resend_stored_it": resend_stored, "replayed_after_restart": len(replay),
            "cdrs_not_acked": len(set(stored) - set(acked)),
            "orphan_workers": sum(len(k["workers_left"]) for k in kills),
            "max_ms": (s.get("latency_ms") or {}).get("max"), "load_output": text[-1500:],
        }
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        if load_log is not None:
            load_log.close()
        gw.stop()
    res.peak_rss_kb = max(peaks, default=0)
    res.seconds = round(time.monotonic() - t0, 1)
    return res


# -- the bench -----------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Path], Result]] = {
    "worker_crash": lambda d: worker_crash(d),
    "retransmissions": lambda d: retransmissions(d),
    "slow_reader": lambda d: slow_reader(d),
    "connection_flood": lambda d: connection_flood(d),
    "overload": lambda d: overload(d),
    "overload_doic": lambda d: overload(d, seconds=10.0, doic=True),
    "overload_slo": lambda d: overload(d, seconds=10.0, latency_target_ms=3.0),
    "gateway_restart": lambda d: gateway_restart(d),
    "gateway_restart_sigterm": lambda d: gateway_restart(d, signal.SIGTERM),
}


def register(name: str, fn: Callable[[Path], Result]) -> None:
    SCENARIOS[name] = fn


@contextlib.contextmanager
def _workdir(keep: str | None) -> Iterator[Path]:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
    else:
        with tempfile.TemporaryDirectory(prefix="chargegw-rel-") as d:
            yield Path(d)


def print_table(results: list[Result]) -> None:
    width = max([18, *(len(r.name) for r in results)])
    head = (f"{'scenario':<{width}} {'faults':>7} {'offered':>9} {'answered':>9} {'lost':>5} "
            f"{'double':>6} {'ledger diff':>11} {'peak RSS MB':>11} {'s':>6}  result")
    print(head)
    print("-" * len(head))
    for r in results:
        diff = "-" if r.ledger_diff_micro is None else str(r.ledger_diff_micro)
        verdict = "ok" if r.passed else "FAIL: " + "; ".join(r.failures)
        print(f"{r.name:<{width}} {r.faults:>7} {r.offered:>9} {r.answered:>9} {r.lost:>5} "
              f"{r.double_charges:>6} {diff:>11} {r.peak_rss_kb / 1024:>11.1f} "
              f"{r.seconds:>6.1f}  {verdict}")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", default=None, choices=None,
                   help="run only this scenario (repeatable); default: all")
    p.add_argument("--json", metavar="FILE", help="write every result as JSON")
    p.add_argument("--keep", metavar="DIR", help="keep the data dirs and logs under DIR")
    p.epilog = "scenarios: " + ", ".join(SCENARIOS)


def run(args: argparse.Namespace) -> int:
    _load_extra_scenarios()
    names = args.only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"chargegw bench reliability: unknown scenario {unknown}; "
              f"known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    results = []
    with _workdir(args.keep) as root:
        for n in names:
            print(f"-- {n} ...", flush=True)
            try:
                r = SCENARIOS[n](root / n)
            except Exception as exc:  # noqa: BLE001 - a scenario that cannot run is a failure
                r = Result(n, failures=[f"could not run: {type(exc).__name__}: {exc}"])
            results.append(r)
    print()
    print_table(results)
    if args.json:
        write_report(Path(args.json), results)
    return 0 if all(r.passed for r in results) else 1


def write_report(path: Path, results: list[Result]) -> None:
    """The JSON report (details may be keyed by Result-Code, an int: written as a string)."""
    path.write_bytes(orjson.dumps(
        {"schema": "chargegw-reliability/1", "results": [r.to_dict() for r in results]},
        option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def _load_extra_scenarios() -> None:
    """The fuzz scenarios live in `reliability_fuzz` (bigger imports, used on demand)."""
    with contextlib.suppress(ImportError):
        from . import reliability_fuzz  # noqa: F401, PLC0415
