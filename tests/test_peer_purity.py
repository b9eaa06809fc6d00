"""The pure peer modules load no asyncio, ssl or socket (issue 9): the sans-IO machine, its
units and the admission rules can be imported and driven without any I/O machinery.

Checked as tests/test_codec_purity.py checks the codec: by each module's source (ast), and
by a fresh interpreter that imports them, wires two machines in memory and runs a CER/CEA.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_codec_purity import FORBIDDEN, FORBIDDEN_LOADED, imported_modules

PEER = Path(__file__).resolve().parent.parent / "peer"
PURE = (
    "fsm",
    "watchdog",
    "capabilities",
    "pending",
    "routing",
    "dupcache",
    "config",
    "errors",
    "link",
    "admission",
    "peerstate",
    "connection",
    "uri",
)


@pytest.mark.parametrize("name", PURE)
def test_no_forbidden_import_in_source(name: str) -> None:
    bad = {m for m in imported_modules(PEER / f"{name}.py") if m.split(".")[0] in FORBIDDEN}
    assert not bad, f"peer/{name}.py imports {sorted(bad)}"


def test_importing_the_pure_peer_modules_loads_none_of_them() -> None:
    mods = ", ".join(f"chargegw.peer.{n}" for n in PURE)
    code = (
        "import sys\n"
        f"import {mods}\n"
        "import chargegw.peer as p\n"
        "from chargegw.peer import NodeConfig, ProtocolError\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN_LOADED!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"loaded: {out.stdout.strip()}"


def test_the_node_is_still_one_attribute_away() -> None:
    code = "import chargegw.peer as p, sys\nprint(p.Node.__module__, 'asyncio' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["chargegw.peer.node", "True"]
