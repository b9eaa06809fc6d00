"""`chargegw ledger check`: verify the money invariants of a store and print the figures."""

from __future__ import annotations

import argparse

import msgspec
import orjson

from chargegw.workers.charging.cli_common import add_store_args, fail, open_from_args
from chargegw.workers.charging.money import format_money
from chargegw.workers.charging.rating import Rater
from chargegw.workers.charging.store import StoreUnavailable, ledger_check


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    chk = sub.add_parser(
        "check",
        help="reconcile balances, reservations, debits and refunds; fail on money from nothing",
    )
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    add_store_args(chk)


def run(args: argparse.Namespace) -> int:
    try:
        store, gy = open_from_args(args)
        rep = ledger_check(store, Rater(gy.tariffs, gy.quota).tariff_by_key)
    except StoreUnavailable as exc:
        return fail("ledger", str(exc))
    if args.json:
        d = msgspec.to_builtins(rep)
        d["ok"] = rep.ok
        print(orjson.dumps(d, option=orjson.OPT_INDENT_2).decode())
        return 0 if rep.ok else 1
    m = format_money
    print(f"accounts          {rep.accounts}")
    print(f"ledger entries    {rep.entries}")
    print(f"open sessions     {rep.open_sessions} ({rep.reservations} reservations)")
    print(f"credits           {m(rep.credits)}")
    print(f"debits            {m(rep.debits)}")
    print(
        f"shortfall         {m(rep.shortfall)}  (usage beyond credit limits, rated but not collectable)"
    )
    print(f"used x tariff     {m(rep.rated)}  (= debits + shortfall)")
    print(f"refunds           {m(rep.refunds)}  (each within the debit it names)")
    print(f"balances          {m(rep.balances)}  (= credits + refunds - debits)")
    print(f"reserved          {m(rep.reserved)}")
    if rep.off_tariff:
        print(
            f"note: {rep.off_tariff} debits were priced at a tariff that is not the configured one now"
        )
    for p in rep.problems[:50]:
        print(f"PROBLEM: {p}")
    if len(rep.problems) > 50:
        print(f"... and {len(rep.problems) - 50} more problems")
    print("ledger OK" if rep.ok else f"ledger FAILED ({len(rep.problems)} problems)")
    return 0 if rep.ok else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chargegw ledger")
    configure(parser)
    return run(parser.parse_args(argv))
