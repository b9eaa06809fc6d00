#!/usr/bin/env python3
"""Mutation fuzzing of the codec: any exception but a CodecError is a failure.

Seeds are the shared Gy vectors, a message of every command class (codec.samples), the
vectors rebuilt through the attribute API, and a message with unknown AVPs nested in groups.
Each input is a seed after 1-3 mutations: bit flips, byte sets, truncations, length-field
edits (message and AVP, at any depth), header edits, and AVP splices (an AVP from any seed
inserted, duplicated or removed at the top level or inside a group, lengths fixed up so the
fault goes deep). Each input is decoded; then every value is read, the message validated and
re-encoded, and these invariants checked:

* decoding never raises anything but CodecError (FramingError, AvpError);
* a decoded message encodes, unchanged, to the same bytes (relay byte-exactness);
* its encoding after every AVP was materialised decodes again (top level);
* dump() and to_dict() never raise (checked on one input in 8, for speed).

    python tools/fuzz_codec.py --count 1000000 [--workers N] [--seed S] [--json report.json]

Exit status 1 on any failure; the first failures are printed with their input in hex.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import struct
import sys
import time
import traceback
from collections import Counter
from typing import Any

import orjson

from chargegw.codec import Avp, CodecError, Group, Message, get_dictionary
from chargegw.codec.bench import load_vectors, rebuild
from chargegw.codec.samples import all_samples, sample_message

_HDR = struct.Struct(">II")
MAX_FAILURES = 20


def seeds() -> list[bytes]:
    d = get_dictionary()
    vec = load_vectors()
    out = [vec["ccr_u"], vec["cca"]]
    out += [rebuild(vec[k])[0].encode() for k in ("ccr_u", "cca")]
    out += [m.encode() for m in all_samples(d)]
    cc = next(c for c in d.commands.values() if c.code == 272)
    unknown_inner = Avp(99999, b"\x01\x02\x03", vendor=424242, flags=0x80)
    nested = sample_message(
        cc,
        True,
        d,
        multiple_services_credit_control=[
            {"rating_group": 7, "used_service_unit": [{"cc_time": 60}]},
            [Avp(99998, b"opaque", flags=0x00), unknown_inner],
        ],
        event_timestamp=1_800_000_000,
    )
    out.append(nested.encode())
    return out


def avp_spans(buf: bytes, start: int, end: int, depth: int = 0) -> list[tuple[int, int, int]]:
    """(offset, length, depth) of every structurally sound AVP, groups looked into by guess."""
    spans = []
    pos = start
    while pos + 8 <= end:
        code, fl = _HDR.unpack_from(buf, pos)
        length = fl & 0xFFFFFF
        hdr = 12 if fl & 0x80000000 else 8
        if length < hdr or pos + length > end:
            break
        spans.append((pos, length, depth))
        if depth < 4 and length - hdr >= 8:  # maybe a group: look inside
            inner = avp_spans(buf, pos + hdr, pos + length, depth + 1)
            if inner and inner[-1][0] + ((inner[-1][1] + 3) & ~3) == pos + ((length + 3) & ~3):
                spans += inner
        pos += (length + 3) & ~3
    return spans


def _fix_lengths(b: bytearray, at: int, delta: int, spans: list[tuple[int, int, int]]) -> None:
    """After inserting/removing delta octets at `at`, grow the message and enclosing AVPs."""
    struct.pack_into(">I", b, 0, (1 << 24) | ((len(b)) & 0xFFFFFF))
    for off, length, _ in spans:
        if off < at < off + length + 1 and off + 8 <= len(b):
            fl = struct.unpack_from(">I", b, off + 4)[0]
            struct.pack_into(">I", b, off + 4, (fl & 0xFF000000) | ((length + delta) & 0xFFFFFF))


def mutate(
    rng: random.Random, data: bytes, corpus: list[bytes], spans: list[tuple[int, int, int]]
) -> tuple[str, bytes]:
    b = bytearray(data)
    if len(b) < 8:
        return "noop", data
    op = rng.randrange(9)
    if op == 0:  # bit flips
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return "bitflip", bytes(b)
    if op == 1:  # byte sets
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.choice((0, 0xFF, 0x80, 0x7F, 0x01, rng.randrange(256)))
        return "byteset", bytes(b)
    if op == 2:  # truncation, with or without the header's length fixed
        n = rng.randrange(0, len(b))
        b = b[:n]
        if n >= 4 and rng.random() < 0.5:
            struct.pack_into(">I", b, 0, (1 << 24) | n)
        return "truncate", bytes(b)
    if op == 3 and spans:  # AVP length edit (any depth)
        off, length, _ = rng.choice(spans)
        new = rng.choice(
            (
                0,
                1,
                7,
                8,
                11,
                12,
                length - 1,
                length + 1,
                length + 4,
                length - 4,
                0xFFFFFF,
                rng.randrange(1 << 24),
            )
        )
        fl = struct.unpack_from(">I", b, off + 4)[0]
        struct.pack_into(">I", b, off + 4, (fl & 0xFF000000) | (new & 0xFFFFFF))
        return "avp-length", bytes(b)
    if op == 4:  # message length / version / flags / code edits
        which = rng.randrange(4)
        if which == 0:
            struct.pack_into(
                ">I",
                b,
                0,
                (1 << 24)
                | rng.choice((0, 19, 20, 21, len(b) - 4, len(b) + 4, rng.randrange(1 << 24))),
            )
        elif which == 1:
            b[0] = rng.choice((0, 2, 0xFF))
        elif which == 2:
            b[4] = rng.randrange(256)
        else:
            b[5:8] = rng.randrange(1 << 24).to_bytes(3, "big")
        return "header", bytes(b)
    if op == 5 and spans:  # AVP flag edit (reserved bits, V without vendor, M)
        off, _, _ = rng.choice(spans)
        b[off + 4] ^= rng.choice((0x80, 0x40, 0x20, 0x10, 0x01, 0x1F))
        return "avp-flags", bytes(b)
    if op == 6 and spans:  # splice an AVP from any seed, at a boundary (maybe inside a group)
        src = rng.choice(corpus)
        sspans = avp_spans(src, 20, len(src))
        if not sspans:
            return "noop", data
        soff, slen, _ = rng.choice(sspans)
        piece = src[soff : soff + ((slen + 3) & ~3)]
        off, length, _ = rng.choice(spans)
        at = off if rng.random() < 0.5 else off + ((length + 3) & ~3)
        b[at:at] = piece
        _fix_lengths(b, at, len(piece), [s for s in spans if s[0] < at])
        return "splice", bytes(b)
    if op == 7 and spans:  # remove or duplicate an AVP (lengths fixed)
        off, length, _ = rng.choice(spans)
        span = (length + 3) & ~3
        piece = bytes(b[off : off + span])
        if rng.random() < 0.5:
            del b[off : off + span]
            _fix_lengths(b, off, -span, [s for s in spans if s[0] < off])
            return "remove", bytes(b)
        b[off:off] = piece
        _fix_lengths(b, off, span, [s for s in spans if s[0] < off])
        return "duplicate", bytes(b)
    if op == 8 and spans:  # value octets rewritten (invalid UTF-8, NULs, bad family ...)
        off, length, _ = rng.choice(spans)
        hdr = 12 if b[off + 4] & 0x80 else 8
        for i in range(off + hdr, min(off + length, len(b))):
            if rng.random() < 0.3:
                b[i] = rng.choice((0x00, 0xFF, 0xC0, 0x80, 0x20, rng.randrange(256)))
        return "value", bytes(b)
    return "noop", data


def read_all(c: Any) -> int:
    n = 0
    for a in c.avps:
        try:
            v = a.value
        except CodecError:
            continue
        n += 1
        if isinstance(v, Group):
            try:
                n += read_all(v)
            except CodecError:
                pass
    return n


def exercise(data: bytes, deep: bool) -> str:
    """Decode and use one input; returns the outcome label (raises on an invariant broken)."""
    try:
        m = Message.decode(data)
    except CodecError as exc:
        return f"decode-error {type(exc).__name__} {exc.result_code}"
    if m.encode() != data:
        raise AssertionError("decoded message does not re-encode to the same bytes")
    read_all(m)
    errs = m.find_errors()
    if deep:
        m.dump()
        orjson.dumps(m.to_dict())
    again = Message.decode(m.encode())
    len(again.avps)
    m.is_retransmit = True  # a header change: encode from the AVPs
    Message.decode(m.encode())
    return f"faults {errs[0].result_code}" if errs else "valid"


def work(args: tuple[int, int, int]) -> dict[str, Any]:
    seed, start, count = args
    corpus = seeds()
    spans = [avp_spans(s, 20, len(s)) for s in corpus]
    outcomes: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    for i in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + i)
        k = rng.randrange(len(corpus))
        data = corpus[k]
        sp = spans[k]
        label = []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            op, data = mutate(rng, data, corpus, sp)
            label.append(op)
            sp = avp_spans(data, 20, len(data)) if len(data) >= 20 else []
        ops["+".join(label)] += 1
        try:
            outcomes[exercise(data, deep=(i & 7) == 0)] += 1
        except Exception as exc:  # noqa: BLE001 - that is what we are looking for
            outcomes["FAILURE"] += 1
            if len(failures) < MAX_FAILURES:
                failures.append(
                    {
                        "input": i,
                        "mutations": label,
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(limit=6),
                        "hex": data.hex(),
                    }
                )
    return {"outcomes": outcomes, "ops": ops, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100_000, help="inputs to try")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    p.add_argument("--seed", type=int, default=1, help="same seed, same inputs")
    p.add_argument("--json", metavar="FILE", help="write the outcome counts as JSON")
    args = p.parse_args(argv)
    workers = max(1, min(args.workers, args.count))
    chunk = max(1, min(20_000, args.count // workers or 1))
    jobs = [(args.seed, s, min(chunk, args.count - s)) for s in range(0, args.count, chunk)]
    t0 = time.perf_counter()
    if workers == 1:
        results = [work(j) for j in jobs]
    else:
        with mp.get_context("fork" if sys.platform != "win32" else "spawn").Pool(workers) as pool:
            results = pool.map(work, jobs, chunksize=1)
    elapsed = time.perf_counter() - t0
    outcomes: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    for r in results:
        outcomes.update(r["outcomes"])
        ops.update(r["ops"])
        failures += r["failures"]
    n_fail = outcomes.get("FAILURE", 0)
    report = {
        "inputs": args.count,
        "seed": args.seed,
        "workers": workers,
        "seconds": round(elapsed, 1),
        "inputs_per_second": round(args.count / elapsed),
        "seeds": len(seeds()),
        "failures": n_fail,
        "outcomes": dict(outcomes.most_common()),
        "mutations": dict(ops.most_common(30)),
        "first_failures": failures[:MAX_FAILURES],
    }
    print(
        f"fuzz_codec: {args.count} inputs, {workers} workers, {elapsed:.1f} s "
        f"({report['inputs_per_second']}/s), {n_fail} failures"
    )
    for k, v in outcomes.most_common():
        print(f"  {v:>9}  {k}")
    for f in failures[:5]:
        print(
            f"\nFAILURE input {f['input']} ({'+'.join(f['mutations'])}): {f['error']}\n{f['traceback']}hex: {f['hex']}"
        )
    if args.json:
        with open(args.json, "wb") as fh:
            fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
