"""The subpackages form layers, checked on the source (ast), function-level and
TYPE_CHECKING imports included, so that a cycle cannot hide inside a function:

    codec  <-  peer, config  <-  ipc, process  <-  gateway, workers  <-  loadtest, cli

- codec imports nothing of chargegw's but itself;
- peer never imports gateway or workers;
- gateway and workers never import each other (they share chargegw.ipc and
  chargegw.process);
- there is no cycle between subpackages at all;
- the pool's scheduler (gateway/pool.py) is sans-IO: no asyncio, zmq or socket, in its
  source or once imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each folder and the package name it is installed as (pyproject's package-dir).
FOLDERS = {
    "codec": "chargegw.codec",
    "peer": "chargegw.peer",
    "gateway": "chargegw.gateway",
    "workers": "chargegw.workers",
    "config": "chargegw.config",
    "loadtest": "chargegw.loadtest",
    "src/chargegw": "chargegw",
}
FORBIDDEN = {
    ("codec", "*"),
    ("chargegw", "*"),
    ("peer", "gateway"),
    ("peer", "workers"),
    ("gateway", "workers"),
    ("workers", "gateway"),
    ("ipc", "gateway"),
    ("ipc", "workers"),
    ("process", "gateway"),
    ("process", "workers"),
}
SANS_IO = {"asyncio", "zmq", "socket", "selectors", "ssl", "uvloop"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (symlinks in src/chargegw skipped)."""
    out: dict[str, Path] = {}
    for folder, pkg in FOLDERS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base)
            if any((base / p).is_symlink() for p in rel.parents if str(p) != "."):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Dotted names `path` imports anywhere in its body (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                out.add(str(node.args[0].value))
    return out


def layer(name: str, known: dict[str, Path] | None = None) -> str | None:
    """The subpackage a chargegw module belongs to: top-level modules are their own layer
    (chargegw.process), the CLI entry points are `cli`, and the package itself (with the
    names its __init__ defines, such as __version__) is `chargegw`; None outside chargegw."""
    parts = name.split(".")
    if parts[0] != "chargegw":
        return None
    if len(parts) == 1:
        return "chargegw"
    if known is not None and "chargegw." + parts[1] not in known:
        return "chargegw"  # `from chargegw import __version__`
    if parts[1] in ("cli", "bench", "__main__"):
        return "cli"
    return parts[1]


def edges() -> dict[tuple[str, str], set[str]]:
    """(from layer, to layer) -> the modules that make that edge."""
    mods = modules()
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, path in mods.items():
        src = layer(name)
        assert src is not None
        for target in imports(name, path):
            dst = layer(target, mods)
            if dst is None or dst == src:
                continue
            out[(src, dst)].add(f"{path.relative_to(ROOT)} -> {target}")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_every_subpackage_and_hidden_imports(tmp_path: Path) -> None:
    names = modules()
    assert {layer(n, names) for n in names} >= {
        "codec", "peer", "gateway", "workers", "config", "loadtest", "ipc", "process", "cli",
        "chargegw",
    }  # fmt: skip
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from chargegw.gateway import pool\n"
        "def f():\n    from chargegw.workers.runtime import WorkerRuntime\n"
        "    from . import sibling\n"
    )
    seen = imports("chargegw.peer.probe", probe)
    assert {"chargegw.gateway.pool", "chargegw.workers.runtime", "chargegw.peer.sibling"} <= seen
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_forbidden_edge() -> None:
    bad = {
        e: sorted(why) for e, why in edges().items() if e in FORBIDDEN or (e[0], "*") in FORBIDDEN
    }
    assert not bad, f"forbidden imports between subpackages: {bad}"


def test_no_cycle_between_subpackages() -> None:
    found = edges()
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in found:
        graph[a].add(b)
    loops = cycles(graph)
    detail = {
        f"{a} -> {b}": sorted(why)[:3]
        for comp in loops
        for (a, b), why in found.items()
        if a in comp and b in comp
    }
    assert not loops, f"import cycles between subpackages {loops}: {detail}"


POOL = ROOT / "gateway" / "pool.py"


def test_pool_scheduler_source_is_sans_io() -> None:
    bad = {m for m in imports("chargegw.gateway.pool", POOL) if m.split(".")[0] in SANS_IO}
    assert not bad, f"gateway/pool.py imports {sorted(bad)}"


def test_pool_scheduler_loads_no_io_module() -> None:
    code = (
        "import sys\n"
        "from chargegw.gateway.pool import PoolCore\n"
        "c = PoolCore(deadline=1.0, heartbeat_timeout=1.0)\n"
        "c.register(b'w', worker_id='w', credit=1, apps=[4], now=0.0)\n"
        "c.place(peer='p', hbh=1, app=4, cmd=272, session_id=b's', raw=b'', now=0.0, wall_now=0.0)\n"
        f"print(','.join(sorted(n for n in sys.modules if n.split('.')[0] in {sorted(SANS_IO)!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"importing gateway/pool.py loaded: {out.stdout.strip()}"


@pytest.mark.parametrize("edge", sorted(FORBIDDEN))
def test_forbidden_edges_are_named_by_layer(edge: tuple[str, str]) -> None:
    """A rule that names no real layer would pass for nothing."""
    mods = modules()
    known = {layer(n, mods) for n in mods}
    assert edge[0] in known and (edge[1] == "*" or edge[1] in known)
