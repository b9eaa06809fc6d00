"""The codec's modules form layers: no import cycle among them, and none with the rest.

Every import counts, at module level or inside a function (a function-level import only
hides a cycle); imports under `if TYPE_CHECKING:` do not run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

CODEC = Path(__file__).resolve().parent.parent / "codec"
MAX_LINES = 620  # "about 600": generated files aside, no module grows past it


def _runtime_imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    out: list[ast.ImportFrom | ast.Import] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph(folder: Path) -> dict[str, set[str]]:
    mods = {p.stem for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m in mods:
        for node in _runtime_imports(ast.parse((folder / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                first = (node.module or "").split(".")[0]
                names = [first] if first else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "chargegw.codec."
            ):
                names = [node.module.split(".")[2]]  # type: ignore[union-attr]
            else:
                continue
            graph[m].update(n for n in names if n in mods and n != m)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_inside_the_codec() -> None:
    assert cycles(import_graph(CODEC)) == []


def test_the_check_sees_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import z\n"
    )
    assert cycles(import_graph(tmp_path)) == [["a", "b"]]


def test_the_codec_imports_nothing_else_of_chargegw() -> None:
    for path in CODEC.rglob("*.py"):
        for node in _runtime_imports(ast.parse(path.read_text())):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if node.level == 0
                else []
            )
            for m in mods:
                assert not m.startswith("chargegw.") or m.startswith("chargegw.codec"), (path, m)


def test_no_codec_module_is_oversized() -> None:
    big = {
        p.name: n for p in CODEC.glob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}
