"""Live-socket fuzz: mutated Diameter frames sent to a running `chargegw run` while a good peer
runs `chargegw load` beside it; also the codec fuzz run (tools/fuzz_codec.py) as a scenario.

    python -m chargegw.loadtest.reliability_fuzz --count 100000 [--seed 14] [--json F]

Each frame is a Gy CCR (initial, update, terminate or event) after 1-3 mutations: bit flips,
byte sets, AVP length edits, truncation (header length fixed or not), header edits (version,
flags, command code, application) and AVP removal or duplication. Frames are sent one at a time
per connection, on several connections at once, and each is classified before it leaves:

* framing fault (the stream cannot go on): the gateway may close the connection;
* decodable request of an application: it must be answered, hop-by-hop and end-to-end ids
  intact, with a Result-Code RFC 6733 or RFC 4006 defines;
* anything else (AVP-level damage, answers, base-protocol commands): whatever the gateway
  does, it must not crash.

Passes when no gateway or worker process died, the good peer saw no error, timeout or loss,
every decodable request was answered, no CC-Request-Number was debited twice and `chargegw
ledger check` reconciles.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from chargegw.codec import CodecError, Message, ResultCode
from chargegw.codec.constants import CMD_CER, CMD_DPR, CMD_DWR

from .reliability import (
    FLAG_R,
    GY,
    Client,
    Gateway,
    Result,
    Sampler,
    _load_into,
    ccr,
    register,
    start_load,
)

_U32 = struct.Struct(">I")
BASE_COMMANDS = {CMD_CER, CMD_DWR, CMD_DPR}
KNOWN_CODES = {int(c) for c in ResultCode}
FUZZ_MSISDN = 4670000090000  # apart from the good peer's subscribers


def _spans(b: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the top-level AVPs that parse."""
    out, pos = [], 20
    while pos + 8 <= len(b):
        fl = _U32.unpack_from(b, pos + 4)[0]
        n = fl & 0xFFFFFF
        if n < 8 or pos + n > len(b):
            break
        out.append((pos, n))
        pos += (n + 3) & ~3
    return out


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    b = bytearray(data)
    if len(b) <= 24:
        return "noop", data
    spans = _spans(data)
    op = rng.randrange(7)
    if op == 0:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(20, len(b)) if len(b) > 20 else rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return "bitflip", bytes(b)
    if op == 1:
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(20, len(b))] = rng.choice((0, 0xFF, 0x80, rng.randrange(256)))
        return "byteset", bytes(b)
    if op == 2 and spans:
        off, n = rng.choice(spans)
        new = rng.choice((0, 7, 8, 12, n - 1, n + 1, n + 4, 0xFFFFFF, rng.randrange(1 << 24)))
        fl = _U32.unpack_from(b, off + 4)[0]
        _U32.pack_into(b, off + 4, (fl & 0xFF000000) | (new & 0xFFFFFF))
        return "avp-length", bytes(b)
    if op == 3:
        n = rng.randrange(20, len(b)) & ~3
        b = b[:n]
        if rng.random() < 0.7:
            _U32.pack_into(b, 0, (1 << 24) | n)
        return "truncate", bytes(b)
    if op == 4:
        which = rng.randrange(5)
        if which == 0:
            b[0] = rng.choice((0, 2, 0xFF))
        elif which == 1:
            b[4] = rng.randrange(256)
        elif which == 2:
            b[5:8] = rng.choice((257, 280, 282, 272, 271, 1, rng.randrange(1 << 24))).to_bytes(
                3, "big")
        elif which == 3:
            _U32.pack_into(b, 8, rng.choice((0, 3, 4, 16777238, rng.randrange(1 << 32))))
        else:
            _U32.pack_into(b, 0, (1 << 24) | rng.choice((19, 20, len(b) + 4, len(b) - 4)))
        return "header", bytes(b)
    if op == 5 and spans:
        off, n = rng.choice(spans)
        span = (n + 3) & ~3
        piece = bytes(b[off:off + span])
        if rng.random() < 0.5:
            del b[off:off + span]
        else:
            b[off:off] = piece
        _U32.pack_into(b, 0, (1 << 24) | len(b))
        return "avp-remove-dup", bytes(b)
    if op == 6 and spans:
        off, n = rng.choice(spans)
        b[off + 4] ^= rng.choice((0x80, 0x40, 0x20, 0x1F))
        return "avp-flags", bytes(b)
    return "noop", bytes(b)


def classify(frame: bytes) -> str:
    """framing | request (decodable, of an application) | other."""
    if len(frame) < 20:
        return "framing"
    vl = _U32.unpack_from(frame, 0)[0]
    n = vl & 0xFFFFFF
    if vl >> 24 != 1 or n != len(frame) or n & 3 or n < 20:
        return "framing"
    try:
        m = Message.decode(frame)
    except CodecError:
        return "other"
    if not frame[4] & FLAG_R or m.code in BASE_COMMANDS or frame[4] & 0x0F:
        return "other"
    return "request"


def seeds(rng: random.Random, i: int, host: str) -> bytes:
    msisdn = str(FUZZ_MSISDN + rng.randrange(50))
    sid = f"{host};{i // 4};{rng.randrange(1 << 30)}"
    kind = rng.randrange(4)
    if kind == 0:
        return ccr(sid, 1, 0, msisdn, requested=1_000_000, origin_host=host)
    if kind == 1:
        return ccr(sid, 2, 1, msisdn, used=rng.randrange(1, 3_000_000), requested=1_000_000, origin_host=host)
    if kind == 2:
        return ccr(sid, 3, 2, msisdn, used=rng.randrange(1, 3_000_000), origin_host=host)
    return ccr(sid, 4, 0, msisdn, requested=1000, origin_host=host)


async def _fuzz(port: int, count: int, seed: int, conns: int, seconds: float,
                st: Counter[str], problems: list[str]) -> None:
    end = time.monotonic() + seconds
    per = -(-count // conns)

    async def lane(k: int) -> None:
        rng = random.Random(seed * 1_000_003 + k)
        c: Client | None = None
        for i in range(per):
            if time.monotonic() > end:
                break
            host = f"fuzz{k}.localdomain"
            data = seeds(rng, i, host)
            ops = []
            for _ in range(rng.choice((1, 1, 2, 3))):
                op, data = mutate(rng, data)
                ops.append(op)
            kind = classify(data)
            if c is None or c.closed.done():
                try:
                    c = await Client.connect(port, origin_host=host)
                    st["connections"] += 1
                except (OSError, TimeoutError) as exc:
                    problems.append(f"lane {k}: cannot connect: {exc}")
                    return
            hbh = c.next_hbh()
            frame = bytearray(data)
            if len(frame) >= 20:
                _U32.pack_into(frame, 12, hbh)
            e2e = _U32.unpack_from(frame, 16)[0] if len(frame) >= 20 else 0
            st["sent"] += 1
            st[f"sent_{kind}"] += 1
            wait = c.expect(hbh)
            c.write(bytes(frame))
            timeout = 5.0 if kind == "request" else 0.1
            both: set[asyncio.Future[Any]] = {wait, c.closed}
            done, _ = await asyncio.wait(both, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            c.waiting.pop(hbh, None)
            if wait in done and not wait.exception():
                ans = wait.result()
                st[f"answered_{kind}"] += 1
                if kind == "request":
                    _check_answer(ans, e2e, st, problems)
            elif c.closed.done():
                st[f"closed_after_{kind}"] += 1
                if kind == "request":
                    st["request_unanswered"] += 1
                    if len(problems) < 20:
                        problems.append(f"connection closed after a decodable request "
                                        f"({'+'.join(ops)}): {bytes(frame).hex()[:400]}")
                c = None
            else:
                st[f"silent_{kind}"] += 1
                if kind == "request":
                    st["request_unanswered"] += 1
                    if len(problems) < 20:
                        problems.append(f"no answer in {timeout} s to a decodable request "
                                        f"({'+'.join(ops)}): {bytes(frame).hex()[:400]}")
            if kind == "framing" and c is not None:
                # the stream cannot be trusted after this frame (a length that promises
                # more octets swallows the next frame): start a new connection
                c.close()
                c = None
        if c is not None:
            c.close()

    await asyncio.gather(*(lane(k) for k in range(conns)))


def _check_answer(ans: bytes, e2e: int, st: Counter[str], problems: list[str]) -> None:
    try:
        m = Message.decode(ans)
    except CodecError as exc:
        st["answer_undecodable"] += 1
        problems.append(f"undecodable answer: {exc}")
        return
    rc = m.get("Result-Code")
    st[f"rc_{rc}"] += 1
    if _U32.unpack_from(ans, 16)[0] != e2e:
        st["answer_bad_e2e"] += 1
        problems.append("an answer's end-to-end id differs from its request's")
    if rc is None or int(rc) not in KNOWN_CODES:
        st["answer_unknown_rc"] += 1
        problems.append(f"an answer with Result-Code {rc}")


def live_fuzz(workdir: Path, count: int = 3000, seed: int = 14, conns: int = 4,
              seconds: float = 20.0, workers: int = 2) -> Result:
    """`count` mutated frames (at most `seconds` of them) to `chargegw run` beside a good peer."""
    res = Result("live_fuzz")
    t0 = time.monotonic()
    st: Counter[str] = Counter()
    problems: list[str] = []
    with Gateway(workdir, workers=workers) as gw, Sampler(gw.pid) as smp:
        pids_before = sorted(gw.worker_pids())
        out = workdir / "good.json"
        load = start_load(gw, out, "--duration", str(seconds), "--concurrency", "5",
                          "--subscribers", "50", "--timeout", "5")
        time.sleep(1.5)
        asyncio.run(_fuzz(gw.port, count, seed, conns, seconds - 2.0, st, problems))
        load.send_signal(signal.SIGINT)  # fuzz done (count reached early): stop the good peer
        load.wait(120)
        pids_after = sorted(gw.worker_pids())
        res.faults = st["sent"]
        rep = orjson.loads(out.read_bytes()) if out.exists() else {}
        s = _load_into(res, rep, 5.0)
        res.check(s.get("errors", 0) == 0, f"the good peer got {s.get('errors')} errors")
        res.check(gw.alive(), "chargegw run died")
        res.check(pids_before == pids_after,
                  f"a worker process died: {pids_before} before, {pids_after} after")
        res.check("exited" not in gw.output().replace("exited (status 0)", ""),
                  "the log reports a worker that exited")
        res.check(st["request_unanswered"] == 0,
                  f"{st['request_unanswered']} decodable requests got no answer")
        res.check(st["sent_request"] > 0, "no decodable request was sent; the fuzz proves little")
        res.check(not (st["answer_bad_e2e"] or st["answer_unknown_rc"]
                       or st["answer_undecodable"]), f"bad answers: {problems[:5]}")
        ledger = gw.ledger()
        res.ledger_ok = bool(ledger.get("ok"))
        res.check(res.ledger_ok, f"ledger check failed: {ledger.get('problems')}")
        dup = gw.double_charges()
        res.double_charges = len(dup)
        res.check(not dup, f"charged twice: {dup[:5]}")
        res.peak_rss_kb = smp.peak_kb
        res.details = {"fuzz": dict(st.most_common()), "problems": problems[:10],
                       "seed": seed, "count": count}
    res.seconds = round(time.monotonic() - t0, 1)
    return res


def codec_fuzz(workdir: Path, count: int = 20000, seed: int = 14) -> Result:
    """tools/fuzz_codec.py (a checkout's): `count` mutated inputs through decode, read,
    validate and re-encode; only decoded messages or the codec's typed errors may come out."""
    res = Result("codec_fuzz")
    t0 = time.monotonic()
    tool = Path(__file__).resolve().parents[1] / "tools" / "fuzz_codec.py"
    if not tool.exists():
        tool = Path(__file__).resolve().parents[3] / "tools" / "fuzz_codec.py"
    if not tool.exists():
        res.failures.append("tools/fuzz_codec.py not found (run from a checkout)")
        return res
    workdir.mkdir(parents=True, exist_ok=True)
    rep_path = workdir / "fuzz_codec.json"
    p = subprocess.run([sys.executable, str(tool), "--count", str(count), "--seed", str(seed),
                        "--workers", "2", "--json", str(rep_path)],
                       capture_output=True, text=True, timeout=3600)
    rep: dict[str, Any] = orjson.loads(rep_path.read_bytes()) if rep_path.exists() else {}
    res.faults = res.offered = int(rep.get("inputs", 0))
    res.answered = res.offered - int(rep.get("failures", 0))
    res.check(p.returncode == 0 and rep.get("failures") == 0,
              f"fuzz_codec failed: {p.stdout[-1500:]}{p.stderr[-1500:]}")
    outcomes = rep.get("outcomes", {})
    res.check(any(k.startswith("decode-error") for k in outcomes) and "valid" in outcomes,
              f"the inputs did not exercise both outcomes: {outcomes}")
    res.details = {"outcomes": outcomes, "inputs_per_second": rep.get("inputs_per_second")}
    res.seconds = round(time.monotonic() - t0, 1)
    return res


register("live_fuzz", lambda d: live_fuzz(d))
register("codec_fuzz", lambda d: codec_fuzz(d))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100_000, help="frames to send")
    p.add_argument("--seed", type=int, default=14, help="same seed, same frames")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--seconds", type=float, default=600.0, help="upper bound on the run")
    p.add_argument("--dir", default=None, help="keep the gateway's data dir and log here")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="chargegw-fuzz-") as tmp:
        r = live_fuzz(Path(a.dir or tmp), a.count, a.seed, a.connections, a.seconds)
    print(orjson.dumps(r.to_dict(), option=orjson.OPT_INDENT_2).decode())
    if a.json:
        Path(a.json).write_bytes(orjson.dumps(r.to_dict(), option=orjson.OPT_INDENT_2))
    return 0 if r.passed else 1


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["GY", "codec_fuzz", "live_fuzz", "main"]
