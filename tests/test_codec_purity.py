"""The codec is pure: no sockets, asyncio, zmq (or threads and clocks) in chargegw.codec.

Checked two ways: the source of every module in codec/ imports none of them (ast), and a
fresh interpreter that imports chargegw.codec and decodes a message has none of them loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CODEC = Path(__file__).resolve().parent.parent / "codec"
FORBIDDEN = ("asyncio", "zmq", "socket", "selectors", "ssl", "uvloop", "threading")
# at run time threading is already there (site imports it), so only these are looked for
FORBIDDEN_LOADED = ("asyncio", "zmq", "socket", "selectors", "ssl", "uvloop")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                out.add(str(node.args[0].value))
    return out


MODULES = sorted(p for p in CODEC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(CODEC)) for p in MODULES])
def test_no_forbidden_import_in_source(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import socket\nfrom asyncio import sleep\nimport importlib\nimportlib.import_module('zmq')\n"
    )
    assert {"socket", "asyncio", "zmq"} <= imported_modules(probe)


def test_importing_and_using_the_codec_loads_none_of_them() -> None:
    code = (
        "import sys\n"
        "import chargegw.codec as c\n"
        "from chargegw.codec import commands, cli_decode, cli_dict, wireshark, pcap, samples\n"
        "d = c.get_dictionary()\n"
        "from chargegw.codec.bench import load_vectors\n"
        "m = c.Message.decode(load_vectors()['ccr_u'])\n"
        "m.dump(); m.find_errors(); m.answer(2001).encode()\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN_LOADED!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"loaded: {out.stdout.strip()}"
