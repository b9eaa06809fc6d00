"""`chargegw cdr export`: write the stored Rf records as JSON lines (orjson) or CSV."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime
from typing import IO

import msgspec
import orjson

from chargegw.workers.charging.cli_common import add_store_args, fail, open_cdrs_from_args
from chargegw.workers.charging.store import StoreError, StoreUnavailable

CSV_FIELDS = [
    "session_id", "record_number", "sub_session", "record_type", "received", "event_timestamp",
    "origin_host", "origin_realm", "user_name", "service_context_id", "subscriptions",
    "interim_interval", "retransmit",
]  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    exp = sub.add_parser("export", help="write CDRs to stdout or a file")
    exp.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    exp.add_argument(
        "--since", help="only records received at or after T (epoch seconds or ISO 8601)"
    )
    exp.add_argument("--output", "-o", help="file to write (default stdout)")
    add_store_args(exp)


def parse_since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def export(records: object, fmt: str, out: IO[bytes]) -> int:
    n = 0
    if fmt == "jsonl":
        for cdr in records:  # type: ignore[attr-defined]
            out.write(orjson.dumps(msgspec.to_builtins(cdr)) + b"\n")
            n += 1
        return n
    import io

    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    w = csv.writer(text)
    w.writerow(CSV_FIELDS)
    for c in records:  # type: ignore[attr-defined]
        subs = ";".join(f"{t}:{d}" for t, d in c.subscriptions)
        w.writerow([
            c.session_id, c.record_number, c.sub_session, c.record_type, _iso(c.received),
            _iso(c.event_timestamp), c.origin_host, c.origin_realm, c.user_name or "",
            c.service_context_id or "", subs, "" if c.interim_interval is None else c.interim_interval,
            int(c.retransmit),
        ])  # fmt: skip
        n += 1
    text.flush()
    text.detach()
    return n


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since)
    except ValueError:
        return fail("cdr", f"--since {args.since!r} is neither epoch seconds nor ISO 8601")
    try:
        store = open_cdrs_from_args(args)
        records = store.iter_cdrs(since)
        if args.output:
            with open(args.output, "wb") as f:
                n = export(records, args.format, f)
        else:
            n = export(records, args.format, sys.stdout.buffer)
            sys.stdout.buffer.flush()
    except (StoreUnavailable, StoreError) as exc:
        return fail("cdr", str(exc))
    print(f"{n} records", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chargegw cdr")
    configure(parser)
    return run(parser.parse_args(argv))
