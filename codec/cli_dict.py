"""`chargegw dict`: show, list and import dictionary definitions.

chargegw dict show CC-Request-Type          # by name, snake_case name or code
chargegw dict show 1247 --vendor 10415
chargegw dict show Credit-Control           # a command, with its grammar
chargegw dict list [--avps | --commands] [--json]
chargegw dict import /usr/share/wireshark/diameter/dictionary.xml --on-conflict skip --out ws.json
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from .dictionaries import resolve
from .dictionary import (
    ON_CONFLICT,
    AvpDef,
    CommandDef,
    Dictionary,
    DictionaryError,
    get_dictionary,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dict",
        action="append",
        default=[],
        metavar="FILE",
        help="load this dictionary file (JSON or Wireshark XML, or vendor:<name>) on top of the "
        "built-in one first",
    )
    parser.add_argument(
        "--on-conflict",
        choices=ON_CONFLICT,
        default="error",
        help="what a clashing definition does (default: error)",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="print an AVP or command definition")
    show.add_argument("what", help="AVP name, snake_case name or code; or a command name or code")
    show.add_argument("--vendor", type=int, default=None, help="vendor id for a numeric AVP code")
    show.add_argument("--json", action="store_true", help="print JSON")
    only = show.add_mutually_exclusive_group()
    only.add_argument("--avp", action="store_true", help="only AVPs (a code can name both)")
    only.add_argument("--command", action="store_true", help="only commands")
    lst = sub.add_parser("list", help="counts per source, vendor and application")
    lst.add_argument("--avps", action="store_true", help="list every AVP")
    lst.add_argument("--commands", action="store_true", help="list every command")
    lst.add_argument("--json", action="store_true", help="print JSON")
    imp = sub.add_parser("import", help="import a Wireshark XML or chargegw JSON dictionary")
    imp.add_argument("file", type=Path, help='a file, or "vendor:<name>" for a shipped one')
    imp.add_argument(
        "--out", type=Path, help="write what the file added as a chargegw JSON dictionary"
    )
    imp.add_argument("--name", default=None, help="the name recorded in the --out file")


def run(args: argparse.Namespace) -> int:
    try:
        d = get_dictionary()
        for f in args.dict:
            d.load_file(resolve(f), on_conflict=args.on_conflict)
        if args.action == "show":
            return _show(d, args)
        if args.action == "list":
            return _list(d, args)
        return _import(d, args)
    except DictionaryError as exc:
        print(f"chargegw dict: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:  # an unknown vendor:<name>
        print(f"chargegw dict: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0


# -- show ------------------------------------------------------------------------------


def find(
    d: Dictionary, what: str, vendor: int | None = None
) -> tuple[list[AvpDef], list[CommandDef]]:
    """AVPs and commands a user's word names: a name in any spelling, or a code."""
    avps: list[AvpDef] = []
    if what.isdigit():
        code = int(what)
        if vendor is not None:
            a = d.avps.get((code, vendor))
            avps = [a] if a is not None else []
        else:
            avps = sorted((a for a in d.avps.values() if a.code == code), key=lambda a: a.vendor)
    else:
        a = d.find_avp(what) or d.find_avp(what.replace("-", "_").lower())
        if a is not None and (vendor is None or a.vendor == vendor):
            avps = [a]
    cmds = d.find_commands(what) if vendor is None else []
    return avps, cmds


def _show(d: Dictionary, args: argparse.Namespace) -> int:
    avps, cmds = find(d, args.what, args.vendor)
    if getattr(args, "command", False):
        avps = []
    if getattr(args, "avp", False):
        cmds = []
    if not avps and not cmds:
        kind = "command" if args.command else "AVP" if args.avp else "AVP or command"
        print(f"chargegw dict: no {kind} {args.what!r}", file=sys.stderr)
        return 1
    if args.json:
        out = {"avps": [a.describe() for a in avps], "commands": [c.describe() for c in cmds]}
        sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    blocks = [describe_avp(d, a) for a in avps] + [describe_command(d, c) for c in cmds]
    if avps and cmds:  # a code such as 272 names both: say so, and how to pick one
        print(
            f"{args.what} names {len(avps)} AVP(s) and {len(cmds)} command(s); "
            "--avp or --command shows only one kind\n"
        )
    print("\n\n".join(blocks))
    return 0


def describe_avp(d: Dictionary, a: AvpDef) -> str:
    vendor = f"{a.vendor} ({d.vendors.get(a.vendor, 'unknown')})" if a.vendor else "0"
    flags = ("V" if a.vendor else "") + ("M" if a.mandatory else "")
    lines = [
        f"AVP {a.name}",
        f"  code        {a.code}",
        f"  vendor      {vendor}",
        f"  type        {a.type}",
        f"  flags       {flags or '-'}",
        f"  attribute   {a.attr}"
        + (f"  (shared; read it as .get({a.name!r}))" if d.by_attr.get(a.attr) is not a else ""),
        f"  source      {a.source}",
    ]
    if a.enum:
        lines.append("  values")
        for label, value in sorted(a.enum.items(), key=lambda kv: kv[1]):
            lines.append(f"    {value:>10}  {label}")
    if a.grammar_src:
        lines.append(f"  grammar     <{a.name}> ::= < AVP Header: {a.code}"
                     + (f" {a.vendor} >" if a.vendor else " >"))  # fmt: skip
        lines += [f"                  {t}" for t in a.grammar.texts()] if a.grammar else []
    users = [x.name for x in d.avps.values() if x.grammar and a.key in x.grammar.by_key]
    if users:
        lines.append(
            f"  used in     {', '.join(sorted(users)[:12])}" + (" ..." if len(users) > 12 else "")
        )
    return "\n".join(lines)


def describe_command(d: Dictionary, c: CommandDef) -> str:
    app = "any" if c.app_id is None else f"{c.app_id} ({d.applications.get(c.app_id, ('?',))[0]})"
    lines = [
        f"Command {c.name}",
        f"  code        {c.code}",
        f"  application {app}",
        f"  proxiable   {'yes' if c.proxiable else 'no'}",
        f"  classes     {c.class_name}Request, {c.class_name}Answer",
        f"  source      {c.source}",
    ]
    for label, g, flags in (("Request", c.request, "REQ, PXY"), ("Answer", c.answer, "PXY")):
        flags = flags if c.proxiable else flags.replace(", PXY", "").replace("PXY", "")
        head = (
            f"  <{c.name}-{label}> ::= < Diameter Header: {c.code}"
            + (f", {flags}" if flags else "")
            + " >"
        )
        lines.append(head)
        lines += [f"      {t}" for t in (g.texts() if g else [])]
    return "\n".join(lines)


# -- list ------------------------------------------------------------------------------


def summary(d: Dictionary) -> dict[str, Any]:
    by_source = Counter(a.source for a in d.avps.values())
    by_vendor = Counter(a.vendor for a in d.avps.values())
    cmd_by_app = Counter(c.app_id for c in d.commands.values())
    return {
        "avps": len(d.avps),
        "commands": len(d.commands),
        "avps_per_source": dict(by_source.most_common()),
        "avps_per_vendor": {
            f"{v} {d.vendors.get(v, '')}".strip(): n for v, n in sorted(by_vendor.items())
        },
        "commands_per_application": {
            ("any" if app is None else f"{app} {d.applications.get(app, ('',))[0]}".strip()): n
            for app, n in sorted(cmd_by_app.items(), key=lambda kv: -1 if kv[0] is None else kv[0])
        },
        "conflicts": list(d.conflicts),
        "attribute_collisions": [
            {"attribute": attr, "reads": a.name, "shadowed": b.name}
            for attr, a, b in d.attr_collisions
        ],
    }


def _list(d: Dictionary, args: argparse.Namespace) -> int:
    if args.avps or args.commands:
        rows: list[Any] = []
        if args.avps:
            for a in sorted(d.avps.values(), key=lambda a: (a.vendor, a.code)):
                rows.append({"code": a.code, "vendor": a.vendor, "name": a.name, "type": a.type,
                             "attribute": a.attr, "source": a.source})  # fmt: skip
        if args.commands:
            for c in sorted(d.commands.values(), key=lambda c: (c.code, c.app_id or 0)):
                rows.append({"command": c.name, "code": c.code, "application": c.app_id,
                             "class": c.class_name, "source": c.source})  # fmt: skip
        if args.json:
            sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        else:
            for r in rows:
                if "command" in r:
                    app = "any" if r["application"] is None else r["application"]
                    print(f"command {r['code']:>8}  app {app!s:<9} {r['command']}  ({r['class']})")
                else:
                    print(f"{r['code']:>8} {r['vendor']:>8}  {r['type']:<16} {r['name']}")
        return 0
    s = summary(d)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(s, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    print(f"{s['avps']} AVPs, {s['commands']} commands")
    for title, key in (
        ("AVPs per source", "avps_per_source"),
        ("AVPs per vendor", "avps_per_vendor"),
        ("commands per application", "commands_per_application"),
    ):
        print(f"\n{title}:")
        for k, n in s[key].items():
            print(f"  {n:>6}  {k}")
    if s["attribute_collisions"]:
        print("\nsnake_case names shared by two AVPs (the first reads as the attribute):")
        for c in s["attribute_collisions"]:
            print(
                f"  {c['attribute']}: {c['reads']} (not {c['shadowed']}: use .get({c['shadowed']!r}))"
            )
    if s["conflicts"]:
        print(f"\n{len(s['conflicts'])} conflicts left out or renamed:")
        for c in s["conflicts"]:
            print(f"  {c}")
    return 0


# -- import ----------------------------------------------------------------------------

# How a Wireshark import resolved a definition the built-in dictionary (or the file itself)
# already had; see codec/wireshark.py. Anything else in Dictionary.conflicts is a conflict
# the --on-conflict policy skipped or renamed.
REPORT_KINDS = ("merged", "kept built-in", "renamed", "duplicate")


def _import(d: Dictionary, args: argparse.Namespace) -> int:
    args.file = Path(resolve(str(args.file)))
    before_avps = set(d.avps)
    before_cmds = set(d.commands)
    before_conflicts = len(d.conflicts)
    added = d.load_file(args.file, on_conflict=args.on_conflict)
    new_avps = [a for k, a in d.avps.items() if k not in before_avps]
    new_cmds = [c for k, c in d.commands.items() if k not in before_cmds]
    conflicts = d.conflicts[before_conflicts:]
    vendors = Counter(a.vendor for a in new_avps)
    if args.out:  # written first: what follows is only a report
        doc = export_json(d, new_avps, new_cmds, args.name or args.file.stem, str(args.file))
        args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(
        f"{args.file}: {added} AVPs and {len(new_cmds)} commands added; {len(d.avps)} AVPs in all"
    )
    for v, n in sorted(vendors.items()):
        print(f"  {n:>6} AVPs of vendor {v} {d.vendors.get(v, '')}".rstrip())
    merged = [c for c in conflicts if c.split(":", 1)[0] in REPORT_KINDS]
    conflicts = [c for c in conflicts if c not in merged]
    if merged:
        kinds = Counter(c.split(":", 1)[0] for c in merged)
        print("merge report: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        for c in merged:
            print(f"  {c}")
    if conflicts:
        print(f"{len(conflicts)} conflicts ({args.on_conflict}):")
        for c in conflicts:
            print(f"  {c}")
    if args.out:
        print(f"wrote {args.out} ({len(new_avps)} AVPs, {len(new_cmds)} commands)")
    return 0


def export_json(
    d: Dictionary, avps: list[AvpDef], cmds: list[CommandDef], name: str, source: str
) -> dict[str, Any]:
    """A chargegw JSON dictionary (the codec/dictionaries format) holding these definitions."""
    vendor_ids = sorted({a.vendor for a in avps if a.vendor})
    out_avps = []
    for a in sorted(avps, key=lambda a: (a.vendor, a.code)):
        e: dict[str, Any] = {"name": a.name, "code": a.code, "type": a.type}
        if a.vendor:
            e["vendor"] = a.vendor
        if not a.mandatory:
            e["m"] = False
        if a.enum:
            e["enum"] = dict(a.enum)
        if a.grammar_src is not None:
            e["grammar"] = list(a.grammar_src)
        out_avps.append(e)
    out_cmds = []
    for c in cmds:
        e = {"name": c.name, "code": c.code, "application": c.app_id, "proxiable": c.proxiable,
             "class_name": c.class_name, "request": list(c.request_src), "answer": list(c.answer_src)}  # fmt: skip
        out_cmds.append(e)
    apps = sorted({c.app_id for c in cmds if c.app_id is not None})
    return {
        "name": name,
        "title": f"imported from {source}",
        "source": source,
        "vendors": [{"id": v, "name": d.vendors.get(v, str(v))} for v in vendor_ids],
        "applications": [
            {
                "id": a,
                "name": d.applications.get(a, (str(a), "auth"))[0],
                "kind": d.applications.get(a, ("", "auth"))[1],
            }
            for a in apps
        ],
        "avps": out_avps,
        "commands": out_cmds,
    }
