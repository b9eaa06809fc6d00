"""`chargegw bench codec`: our codec against python-diameter 0.9.0, same messages, same run.

Measured on the shared Gy vectors (CCR-U and CCA, encoded by python-diameter itself):

* decode-and-read: decode, then read MSCC[0].Used-Service-Unit[0].CC-Total-Octets (CCR-U) or
  MSCC[0].Granted-Service-Unit[0].CC-Total-Octets (CCA).
* encode: python-diameter's `as_bytes()` re-encodes every AVP of a decoded message; a decoded
  message of ours that is unchanged returns its buffer, so ours encodes a message *built* from
  the vector's values through the attribute API (every AVP really encoded). Its bytes are
  checked against the vector: they must be equal but for the M bits the vector lacks (README
  of the vectors: Origin-Host, Origin-Realm, PDP-Address).
* relay (reported apart): decode, then encode unchanged, against from_bytes + as_bytes.
* build+encode (ours only): building the message from keyword arguments, then encoding.

Each measurement is best-of-N rounds with the two implementations interleaved round by round
and the garbage collector off during a round (as timeit does). Single thread, one core. The
clock is the process's CPU time by default: on a machine shared with other jobs, wall time
also counts the time the process waited for a core, which swings the ratio by 2x; `--clock
wall` measures wall time instead.

    chargegw bench codec [--rounds 15] [--min-time 0.1] [--clock cpu|wall] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .container import Group
from .dictionary import get_dictionary
from .message import Message, class_for

# The shared vectors (../shared/vectors/*.hex), so the benchmark runs without that folder.
GY_CCR_UPDATE_HEX = (
    "01000250c0000110000000040000123400005678000001074000004770677730312e67792e6d6e633030312e"
    "6d63633030312e336770706e6574776f726b2e6f72673b313733323631373630303b30303030303030313b30"
    "30303100000001080000002e70677730312e67792e6d6e633030312e6d63633030312e336770706e6574776f"
    "726b2e6f7267000000000128000000256d6e633030312e6d63633030312e336770706e6574776f726b2e6f72"
    "670000000000011b400000296f63732e6d6e633030312e6d63633030312e336770706e6574776f726b2e6f72"
    "67000000000001024000000c00000004000001cd40000016333232353140336770702e6f72670000000001a0"
    "4000000c000000020000019f4000000c00000001000001bb40000028000001c24000000c00000000000001bc"
    "40000014343931373031323334353637000001c74000000c00000001000001c840000064000001b540000008"
    "000001be40000048000001a54000001000000000001000010000019c4000001000000000000400000000019e"
    "4000001000000000000c000100000368c0000010000028af00000003000001b04000000c0000006400000369"
    "c000009c000028af0000036ac0000090000028af00000002c0000010000028af0a0b0c0d000004cb80000012"
    "000028af00010a2d0011000000000008c0000011000028af30303130310000000000001e40000010696e7465"
    "726e657400000017c000000e000028af4000000000000016c0000019000028af8200f110000100f110000001"
    "0a00000000000015c000000d000028af06000000"
)
GY_CCA_UPDATE_HEX = (
    "0100014c40000110000000040000123400005678000001074000004770677730312e67792e6d6e633030312e"
    "6d63633030312e336770706e6574776f726b2e6f72673b313733323631373630303b30303030303030313b30"
    "303031000000010c4000000c000007d1000001080000002f6f637330312e6f63732e6d6e633030312e6d6363"
    "3030312e336770706e6574776f726b2e6f72670000000128000000296f63732e6d6e633030312e6d63633030"
    "312e336770706e6574776f726b2e6f7267000000000001024000000c00000004000001a04000000c00000002"
    "0000019f4000000c00000001000001c840000064000001af40000018000001a5400000100000000000a00000"
    "000001b04000000c00000064000001c04000000c00000e100000010c4000000c000007d100000365c0000010"
    "000028af0010000000000367c0000010000028af0000012c"
)


VECTOR_DIRS = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "vectors",  # repo/../shared
    Path.cwd().parent / "shared" / "vectors",
    Path.cwd() / "shared" / "vectors",
)

# AVPs the independent encoder sends without the M bit that the dictionary sets
KNOWN_FLAG_QUIRKS = {"Origin-Host", "Origin-Realm", "PDP-Address"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=15, help="best of this many rounds")
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per round, about")
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall time"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--vectors", type=Path, help="folder with gy_ccr_update.hex/gy_cca_update.hex"
    )
    parser.add_argument("--no-python-diameter", action="store_true", help="measure ours only")


def load_vectors(folder: Path | None = None, *, search: bool = False) -> dict[str, bytes]:
    """{'ccr_u': ..., 'cca': ...}: the copies embedded in this module (what the tests use, so
    they never depend on files outside the repository), or those in `folder`, or, with
    `search`, in the first ../shared/vectors found (the benchmark's default)."""
    dirs = [folder] if folder else list(VECTOR_DIRS) if search else []
    for d in dirs:
        ccr, cca = d / "gy_ccr_update.hex", d / "gy_cca_update.hex"
        if ccr.is_file() and cca.is_file():
            return {
                "ccr_u": bytes.fromhex(ccr.read_text().strip()),
                "cca": bytes.fromhex(cca.read_text().strip()),
                "source": str(d),  # type: ignore[dict-item]
            }
    return {
        "ccr_u": bytes.fromhex("".join(GY_CCR_UPDATE_HEX)),
        "cca": bytes.fromhex("".join(GY_CCA_UPDATE_HEX)),
        "source": "embedded copy",  # type: ignore[dict-item]
    }


def values_of(c: Any) -> dict[str, Any]:
    """Every AVP of a container as keyword arguments (snake_case), groups as dicts."""
    g = c._grammar
    many = g.many if g is not None else frozenset()
    kw: dict[str, list[Any]] = {}
    for a in c.avps:
        d = a.definition
        if d is None:
            raise ValueError(f"AVP {a.code}/{a.vendor} is not in the dictionary")
        v = a.value
        kw.setdefault(d.attr, []).append(values_of(v) if isinstance(v, Group) else v)
    out: dict[str, Any] = {}
    for k, vs in kw.items():
        d = c._dict.by_attr[k]
        out[k] = vs if (len(vs) > 1 or d.ikey in many) else vs[0]
    return out


def rebuild(raw: bytes) -> tuple[Message, dict[str, Any]]:
    """A fresh command object holding every value of the decoded message (attribute API)."""
    m = Message.decode(raw)
    klass = class_for(m._dict, m.app_id, m.code, m.is_request)
    kw = values_of(m)
    built = klass(hop_by_hop=m.hop_by_hop, end_to_end=m.end_to_end, **kw)
    return built, kw


def flag_differences(ours: bytes, theirs: bytes) -> list[str]:
    """Names of the AVPs whose octets differ, given that only flag octets differ; else raise."""
    if len(ours) != len(theirs):
        raise AssertionError(f"built message is {len(ours)} octets, the vector {len(theirs)}")
    diffs = [i for i in range(len(ours)) if ours[i] != theirs[i]]
    names = []
    flag_positions = _flag_offsets(Message.decode(theirs))
    for i in diffs:
        name = flag_positions.get(i)
        if name is None:
            raise AssertionError(f"octet {i} differs and is not an AVP flags octet")
        names.append(name)
    return names


def _flag_offsets(c: Any) -> dict[int, str]:
    out = {}
    for a in c.avps:
        out[a._off + 4] = a.name
        v = a.value
        if isinstance(v, Group):
            out.update(_flag_offsets(v))
    return out


def best_of(
    funcs: dict[str, Callable[[], Any]], rounds: int, min_time: float, clock: str = "cpu"
) -> dict[str, float]:
    """Operations per second of each function: best round, functions interleaved per round."""
    timer = time.process_time if clock == "cpu" else time.perf_counter
    numbers = {}
    for name, f in funcs.items():  # calibrate: iterations for about min_time per round
        n = 1
        while True:
            t = _time(f, n, timer)
            if t >= min_time / 4 or n >= 1 << 22:
                numbers[name] = max(1, int(n * min_time / max(t, 1e-9)))
                break
            n *= 4
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(rounds):
        for name, f in funcs.items():
            best[name] = min(best[name], _time(f, numbers[name], timer) / numbers[name])
    return {name: 1.0 / t for name, t in best.items()}


def _time(f: Callable[[], Any], n: int, timer: Callable[[], float] = time.perf_counter) -> float:
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = timer()
        for _ in range(n):
            f()
        return timer() - t0
    finally:
        if gc_was:
            gc.enable()


def _read(m: Any, mscc: str, unit: str, listed: bool) -> Any:
    u = getattr(getattr(m, mscc)[0], unit)
    return (u[0] if listed else u).cc_total_octets


def _reference() -> Any:
    try:
        import diameter  # noqa: F401
        from diameter.message import Message as PDMessage
    except ImportError:
        return None
    return PDMessage


def measure(args: argparse.Namespace) -> dict[str, Any]:
    get_dictionary()
    vec = load_vectors(args.vectors, search=True)
    pd = None if args.no_python_diameter else _reference()
    report: dict[str, Any] = {
        "benchmark": "codec",
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "vectors": vec["source"],
        "rounds": args.rounds,
        "min_time_s": args.min_time,
        "clock": "process CPU time" if args.clock == "cpu" else "wall time",
        "reference": "python-diameter 0.9.0" if pd is not None else None,
        "results": {},
        "checks": {},
    }
    # (MSCC attribute, unit attribute, is the unit a list): USU may repeat, GSU may not
    paths = {
        "ccr_u": ("multiple_services_credit_control", "used_service_unit", True),
        "cca": ("multiple_services_credit_control", "granted_service_unit", False),
    }
    for name in ("ccr_u", "cca"):
        raw: bytes = vec[name]
        mscc, unit, listed = paths[name]
        built, kw = rebuild(raw)
        klass = type(built)
        enc = built.encode()
        quirks = flag_differences(enc, raw)
        ok = set(quirks) <= KNOWN_FLAG_QUIRKS
        expected = _read(Message.decode(raw), mscc, unit, listed)
        report["checks"][name] = {
            "built_equals_vector_but_flags": ok,
            "flag_differences": quirks,
            "relay_byte_exact": Message.decode(raw).encode() == raw,
            "read_value": expected,
        }

        if listed:

            def ours_read(raw: bytes = raw) -> Any:
                return (
                    Message.decode(raw)
                    .multiple_services_credit_control[0]
                    .used_service_unit[0]
                    .cc_total_octets
                )
        else:

            def ours_read(raw: bytes = raw) -> Any:
                return (
                    Message.decode(raw)
                    .multiple_services_credit_control[0]
                    .granted_service_unit.cc_total_octets
                )

        def ours_relay(raw: bytes = raw) -> bytes:
            return Message.decode(raw).encode()

        def ours_build(klass: Any = klass, kw: dict[str, Any] = kw) -> bytes:
            out: bytes = klass(**kw).encode()
            return out

        funcs: dict[str, Callable[[], Any]] = {
            "decode_read/ours": ours_read,
            "encode/ours": built.encode,
            "relay/ours": ours_relay,
            "build_encode/ours": ours_build,
        }
        if pd is not None:
            pmsg = pd.from_bytes(raw)
            got = _read(pmsg, mscc, unit, listed)
            report["checks"][name]["reference_read_value"] = got
            report["checks"][name]["reference_reencodes_exactly"] = pmsg.as_bytes() == raw

            if listed:

                def ref_read(raw: bytes = raw) -> Any:
                    return (
                        pd.from_bytes(raw)
                        .multiple_services_credit_control[0]
                        .used_service_unit[0]
                        .cc_total_octets
                    )
            else:

                def ref_read(raw: bytes = raw) -> Any:
                    return (
                        pd.from_bytes(raw)
                        .multiple_services_credit_control[0]
                        .granted_service_unit.cc_total_octets
                    )

            def ref_relay(raw: bytes = raw) -> bytes:
                out: bytes = pd.from_bytes(raw).as_bytes()
                return out

            funcs.update(
                {
                    "decode_read/python-diameter": ref_read,
                    "encode/python-diameter": pmsg.as_bytes,
                    "relay/python-diameter": ref_relay,
                }
            )
        ops = best_of(funcs, args.rounds, args.min_time, args.clock)
        res: dict[str, Any] = {}
        for key, v in ops.items():
            what, who = key.split("/")
            res.setdefault(what, {})["ours" if who == "ours" else "python_diameter"] = round(v, 1)
        for r in res.values():
            if "python_diameter" in r:
                r["ratio"] = round(r["ours"] / r["python_diameter"], 2)
        report["results"][name] = res
    ratios = [
        r[w]["ratio"]
        for r in report["results"].values()
        for w in ("decode_read", "encode")
        if "ratio" in r.get(w, {})
    ]
    report["min_ratio_decode_read_and_encode"] = min(ratios) if ratios else None
    report["target_10x_met"] = bool(ratios) and min(ratios) >= 10
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"chargegw codec benchmark: Python {report['python']} on {report['platform']}")
    print(
        f"vectors: {report['vectors']}; best of {report['rounds']} rounds, one core, gc off, "
        f"clock: {report['clock']}"
    )
    ref = report["reference"] or "(python-diameter not installed)"
    print(
        f"\n{'message':<7} {'operation':<14} {'ours ops/s':>12} {'python-diameter':>16} {'ratio':>7}"
    )
    labels = {
        "decode_read": "decode+read",
        "encode": "encode",
        "relay": "relay*",
        "build_encode": "build+encode**",
    }
    for name, res in report["results"].items():
        for what in ("decode_read", "encode", "relay", "build_encode"):
            r = res.get(what, {})
            theirs = f"{r['python_diameter']:>16,.0f}" if "python_diameter" in r else f"{'-':>16}"
            ratio = f"{r['ratio']:>6.1f}x" if "ratio" in r else f"{'-':>7}"
            print(f"{name:<7} {labels[what]:<14} {r['ours']:>12,.0f} {theirs} {ratio}")
    print("\n*  relay: decode then encode unchanged (ours returns the buffer; theirs re-encodes)")
    print("** build+encode: ours only, from keyword arguments")
    for name, c in report["checks"].items():
        print(
            f"check {name}: built == vector but flags: {c['built_equals_vector_but_flags']} "
            f"(flag octets differ on {', '.join(c['flag_differences']) or 'none'}); "
            f"relay byte-exact: {c['relay_byte_exact']}"
        )
    if report["min_ratio_decode_read_and_encode"] is not None:
        print(
            f"reference: {ref}; smallest ratio (decode+read, encode): "
            f"{report['min_ratio_decode_read_and_encode']:.1f}x; 10x target met: {report['target_10x_met']}"
        )


def run(args: argparse.Namespace) -> int:
    report = measure(args)
    print_report(report)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"wrote {args.json}")
    ok = all(
        c["built_equals_vector_but_flags"] and c["relay_byte_exact"]
        for c in report["checks"].values()
    )
    return 0 if ok else 1
