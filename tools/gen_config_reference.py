#!/usr/bin/env python3
"""Write docs/configuration.md: every configuration key, from the schema itself.

The schema (config/schema.py, msgspec Structs) is the truth: the walk gives each key's type,
default and `CHARGEGW_*` environment override (config/loader.py's rule); the words come from
the comment beside the key in config/default.toml, else from the schema's own comment.
Run it after a key changes:

    python tools/gen_config_reference.py            # rewrite docs/configuration.md
    python tools/gen_config_reference.py --check    # exit 1 if the file is not current

default.toml shows tables that are empty by default ([[peers]], [listen.tls], ...) as
commented-out examples (`# [[peers]]`, `# name = ...`); `toml_keys()` reads those too, so
a test can check that every key of the schema appears in the file.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "configuration.md"
DEFAULT_TOML = REPO / "config" / "default.toml"
SCHEMA_PY = REPO / "config" / "schema.py"


@dataclass
class Key:
    name: str
    type: str
    default: str
    env: str
    doc: str


@dataclass
class Table:
    path: str  # "pool", "listen.tls", "" for the top level (list indices left out)
    header: str  # how default.toml writes it: "[pool]", "[[listen]]", "[listen.tls]"
    doc: str
    note: str  # what the table's own default is (for lists and optional tables)
    env: str  # the variable that sets the whole table or list, where that is useful
    keys: list[Key] = field(default_factory=list)


# Comments: the schema's (by class and field) and default.toml's (by key path) ------------


def schema_comments(path: Path = SCHEMA_PY) -> dict[tuple[str, str], str]:
    """{(class name, field): comment}: the comment on the field's line, else the comment
    lines directly above it."""
    src = path.read_text()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = src.splitlines()
    out: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            text = comments.get(stmt.lineno, "")
            if not text:
                above: list[str] = []
                n = stmt.lineno - 1
                while n >= 1 and lines[n - 1].strip().startswith("#"):
                    above.insert(0, comments.get(n, ""))
                    n -= 1
                text = " ".join(above)
            out[(node.name, stmt.target.id)] = text
    return out


_HEADER = re.compile(r"^(#\s*)?(\[\[?)([A-Za-z_][\w.]*)(\]\]?)\s*(#.*)?$")
_KEY = re.compile(r"^(#\s?)?([A-Za-z_][\w-]*)\s*=\s*(.*)$")


def _split_comment(rest: str, *, keep_space: bool = False) -> tuple[str, str]:
    """(value, comment) of what follows `key =`, a '#' inside a string not counting; with
    `keep_space` the comment keeps its leading spaces (an indented continuation)."""
    quote = ""
    for i, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            comment = rest[i + 1 :].rstrip()
            return rest[:i].strip(), comment if keep_space else comment.strip()
    return rest.strip(), ""


@dataclass
class TomlFacts:
    keys: set[str] = field(default_factory=set)  # "pool.deadline", "listen.tls.cert", ...
    tables: set[str] = field(default_factory=set)
    key_docs: dict[str, str] = field(default_factory=dict)
    table_docs: dict[str, str] = field(default_factory=dict)


def toml_keys(path: Path = DEFAULT_TOML) -> TomlFacts:
    """The keys and tables default.toml sets or shows as a commented example, with their
    comments. A commented `# key = value` counts only under a commented header: elsewhere
    it is prose."""
    facts = TomlFacts()
    table, in_example = "", False
    block: list[str] = []  # comment lines directly above the next key or header
    last: str | None = None  # the key a continuation comment line belongs to
    seen: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            block, last = [], None
            continue
        if last is not None and re.match(r"#?\s+#", line):  # a comment's next line
            more = stripped.lstrip("#").strip().lstrip("#").strip()
            facts.key_docs[last] = f"{facts.key_docs[last]} {more}".strip()
            continue
        if stripped == "#":  # an empty comment line ends a paragraph
            block, last = [], None
            continue
        if h := _HEADER.match(stripped):
            table, in_example = h.group(3), bool(h.group(1))
            facts.tables.add(table)
            doc = " ".join(block) or (h.group(5) or "").lstrip("#").strip()
            if doc and table not in facts.table_docs:
                facts.table_docs[table] = doc
            block, last = [], None
            continue
        k = _KEY.match(stripped)
        if k and (not k.group(1) or in_example):
            key = f"{table}.{k.group(2)}" if table else k.group(2)
            facts.keys.add(key)
            seen[key] = seen.get(key, 0) + 1
            _, comment = _split_comment(k.group(3), keep_space=True)
            if comment.startswith("  ") and last is not None:
                # An indented comment goes on with the one on the line above: one sentence
                # about both keys (crash_limit / crash_window).
                facts.key_docs[last] = f"{facts.key_docs[last]} {comment.strip()}"
                facts.key_docs[key] = facts.key_docs[last]
            else:
                facts.key_docs[key] = comment.strip() or " ".join(block)
            block, last = [], key
            continue
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            last = None
    for key, n in seen.items():
        if n > 1:  # one comment per entry of a list ([[applications]]): not the key's meaning
            facts.key_docs.pop(key, None)
    return facts


# The walk -------------------------------------------------------------------------------


def _strip_none(t: Any) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    if isinstance(t, msgspec.inspect.UnionType):
        rest = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        if len(rest) == 1:
            return rest[0], True
    return t, False


def type_name(t: Any) -> str:
    t, optional = _strip_none(t)
    i = msgspec.inspect
    names: dict[type, str] = {
        i.StrType: "string",
        i.IntType: "integer",
        i.FloatType: "float",
        i.BoolType: "boolean",
        i.AnyType: "any",
    }
    name = names.get(type(t))
    if name is None:
        if isinstance(t, i.LiteralType):
            name = " \\| ".join(json.dumps(v) for v in t.values)
        elif isinstance(t, i.ListType):
            name = f"list of {type_name(t.item_type)}"
        elif isinstance(t, i.DictType):
            name = "table (free-form)"
        elif isinstance(t, i.StructType):
            name = "table"
        else:
            name = type(t).__name__
    return f"{name} (optional)" if optional else name


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{}" if not v else json.dumps(v)
    if v is None:
        return "(none)"
    return repr(v)


def _default(f: Any) -> Any:
    if f.default is not msgspec.NODEFAULT:
        return f.default
    if f.default_factory is not msgspec.NODEFAULT:
        return f.default_factory()
    return msgspec.NODEFAULT


def _env(parts: list[str]) -> str:
    return "CHARGEGW_" + "__".join(p if p == "<n>" else p.upper() for p in parts)


def walk() -> list[Table]:
    """Every table of the schema, in declaration order, with its keys."""
    from chargegw.config.schema import Config

    notes = schema_comments()
    toml = toml_keys()
    tables: list[Table] = []

    def visit(st: Any, path: str, header: str, env_parts: list[str], note: str, env: str) -> None:
        doc = toml.table_docs.get(path) or " ".join((st.cls.__doc__ or "").split())
        table = Table(path, header, doc, note, env)
        tables.append(table)
        subs: list[tuple[Any, str, str, list[str], str, str]] = []
        for f in st.fields:
            t, optional = _strip_none(f.type)
            key = f"{path}.{f.name}" if path else f.name
            default = _default(f)
            if isinstance(t, msgspec.inspect.StructType):
                opt = "Optional: absent unless set." if optional and default is None else ""
                subs.append((t, key, f"[{key}]", [*env_parts, f.name], opt, ""))
                continue
            if isinstance(t, msgspec.inspect.ListType) and isinstance(
                t.item_type, msgspec.inspect.StructType
            ):
                n = len(default) if isinstance(default, list) else 0
                note_ = (
                    "None by default."
                    if n == 0
                    else f"{n} {'entry' if n == 1 else 'entries'} by default"
                    " (config/default.toml spells them out); listing any replaces them all."
                )
                whole = f"`{_env([*env_parts, f.name])}` (a TOML array of inline tables)"
                subs.append(
                    (t.item_type, key, f"[[{key}]]", [*env_parts, f.name, "<n>"], note_, whole)
                )
                continue
            if isinstance(t, msgspec.inspect.DictType):
                doc_ = toml.table_docs.get(key) or notes.get((st.cls.__name__, f.name), "")
                env = _env([*env_parts, f.name]) + "__<KEY>"
                table.keys.append(Key(f.name, type_name(f.type), "{}", env, doc_))
                continue
            doc_ = toml.key_docs.get(key) or notes.get((st.cls.__name__, f.name), "")
            value = "(required)" if default is msgspec.NODEFAULT else _toml_value(default)
            table.keys.append(
                Key(f.name, type_name(f.type), value, _env([*env_parts, f.name]), doc_)
            )
        for sub in subs:
            visit(*sub)

    visit(msgspec.inspect.type_info(Config), "", "(top level)", [], "", "")
    return tables


def schema_keys() -> set[str]:
    """Every key path of the schema, list indices left out ("listen.tls.cert")."""
    return {f"{t.path}.{k.name}" if t.path else k.name for t in walk() for k in t.keys} | {
        t.path for t in walk() if t.path
    }


# Rendering ------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    from chargegw.config.loader import NOT_CONFIG

    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by tools/gen_config_reference.py from config/schema.py and",
        "     config/default.toml: do not edit; a test fails when it is out of date. -->",
        "",
        "Every key chargegw reads, with its type, its default and the environment variable",
        "that overrides it. `chargegw run` with no file uses these defaults;",
        "[config/default.toml](../config/default.toml) spells them out with comments, and",
        "shows the tables that are empty by default as commented-out examples.",
        "",
        "**Environment overrides** (config/loader.py): `CHARGEGW_<SECTION>__<KEY>=value`, a",
        "double underscore between levels, case-insensitive; top-level keys are",
        "`CHARGEGW_<KEY>`. In a list of tables a number picks the entry (`<n>` below, from 0):",
        "`CHARGEGW_LISTEN__0__PORT=3869`. A list value is a TOML array or, for a list of",
        "strings, a comma-separated string. Scalars are converted to the key's type. Any other",
        "`CHARGEGW_*` variable that names no key stops the process at start, except these,",
        "which are not keys:",
        "",
    ]
    out += [f"- `{name}`: {what}" for name, what in NOT_CONFIG.items()]
    out += [
        "",
        "A bad value fails at start and names the key and the variable it came from.",
        "",
    ]
    for t in walk():
        out.append(f"## {t.header if t.path else 'Top level'}")
        out.append("")
        for text in (
            t.doc,
            t.note,
            f"The whole list from the environment: {t.env}." if t.env else "",
        ):
            if text:
                out += [text, ""]
        if not t.keys:
            continue
        out.append("| key | type | default | environment | meaning |")
        out.append("|---|---|---|---|---|")
        for k in t.keys:
            out.append(
                f"| `{k.name}` | {k.type} | `{_cell(k.default)}` | `{k.env}` | {_cell(k.doc)} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python tools/gen_config_reference.py")
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
