"""`chargegw accounts import|show|topup|block|unblock`: manage accounts in the charging store.

CSV import columns (header row required): id, balance, credit_limit, blocked, msisdn, imsi,
sip_uri, nai. Amounts are decimal currency units ("12.50"); credit_limit is the lowest
balance allowed ("-20.00" lets an account run 20 into debt). A file with a bad row imports
nothing and names the line.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

from chargegw.workers.charging.cli_common import add_store_args, fail, open_from_args
from chargegw.workers.charging.money import format_money, parse_money
from chargegw.workers.charging.store import AccountRow, StoreError, StoreUnavailable

SUB_COLUMNS = {"msisdn": 0, "imsi": 1, "sip_uri": 2, "nai": 3, "private": 4}
TRUE = {"1", "true", "yes", "y"}
FALSE = {"", "0", "false", "no", "n"}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("import", help="create or update accounts from a CSV file")
    p.add_argument("file")
    add_store_args(p)
    p = sub.add_parser("show", help="show an account (by id or by a subscription id)")
    p.add_argument("id")
    add_store_args(p)
    p = sub.add_parser("topup", help="add money; sessions under Final-Unit-Indication get a RAR")
    p.add_argument("id")
    p.add_argument("amount", help="decimal currency units, e.g. 10.00")
    add_store_args(p)
    for name, help_ in (("block", "block; its open sessions get an ASR"), ("unblock", "unblock")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("id")
        add_store_args(p)


def read_csv(path: str) -> list[AccountRow]:
    rows: list[AccountRow] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise ValueError(f"{path}: the header row must name an 'id' column")
        unknown = set(reader.fieldnames) - {
            "id",
            "balance",
            "credit_limit",
            "blocked",
            *SUB_COLUMNS,
        }
        if unknown:
            raise ValueError(f"{path}: unknown columns {sorted(unknown)}")
        for row in reader:
            line = reader.line_num
            try:
                ident = (row.get("id") or "").strip()
                if not ident:
                    raise ValueError("empty id")
                blocked = (row.get("blocked") or "").strip().lower()
                if blocked not in TRUE | FALSE:
                    raise ValueError(f"blocked must be true or false, not {blocked!r}")
                subs = [
                    (t, row[c].strip())
                    for c, t in SUB_COLUMNS.items()
                    if (row.get(c) or "").strip()
                ]
                rows.append(
                    AccountRow(
                        ident,
                        parse_money((row.get("balance") or "0").strip()),
                        parse_money((row.get("credit_limit") or "0").strip()),
                        blocked in TRUE,
                        subs,
                    )
                )
            except ValueError as exc:
                raise ValueError(f"{path} line {line}: {exc}") from None
    return rows


def show(info: object) -> None:
    a = info.account  # type: ignore[attr-defined]
    print(f"account       {a.id}")
    print(f"balance       {format_money(a.balance)}")
    print(f"reserved      {format_money(a.reserved)}")
    print(f"available     {format_money(a.balance - a.reserved - a.credit_limit)}")
    print(f"credit limit  {format_money(a.credit_limit)}")
    print(f"blocked       {'yes' if a.blocked else 'no'}")
    print(f"spent         {format_money(a.spent)} ({a.period or 'no period yet'})")
    print(f"sessions      {info.open_sessions} open")  # type: ignore[attr-defined]
    names = {v: k for k, v in SUB_COLUMNS.items()}
    for t, d in info.subscriptions:  # type: ignore[attr-defined]
        print(f"subscription  {names.get(t, t)} {d}")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "import":
            try:
                rows = read_csv(args.file)
            except (OSError, ValueError) as exc:
                return fail("accounts", str(exc))
            store, _ = open_from_args(args)
            n = store.import_accounts(rows, time.time())
            print(f"imported {n} accounts")
            return 0
        store, _ = open_from_args(args)
        if args.action == "show":
            info = store.get_account(args.id)
            if info is None:
                return fail("accounts", f"no account {args.id!r}")
            show(info)
            return 0
        if args.action == "topup":
            try:
                amount = parse_money(args.amount)
            except ValueError as exc:
                return fail("accounts", str(exc))
            acct = store.topup(args.id, amount, time.time())
            print(f"{acct.id}: balance {format_money(acct.balance)}")
            return 0
        acct = store.set_blocked(args.id, args.action == "block")
        print(f"{acct.id}: {'blocked' if acct.blocked else 'unblocked'}")
        return 0
    except StoreError as exc:
        return fail("accounts", str(exc))
    except StoreUnavailable as exc:
        return fail("accounts", str(exc))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chargegw accounts")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
