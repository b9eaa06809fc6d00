"""The optional vendor dictionaries (issue 13): shipped as JSON, loaded by name from the config
(`files = ["vendor:starent"]`) or the CLI, each conflict-free over the built-in dictionary and
all of them together; the shipped files match what the generator makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chargegw.codec import Message
from chargegw.codec.dictionaries import resolve, vendor_names
from chargegw.codec.dictionary import BUILTIN_FILES, load_builtin, load_extra
from chargegw.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


def test_vendor_dictionaries_are_shipped_and_optional() -> None:
    names = vendor_names()
    assert {"cisco", "ericsson", "starent", "nokia", "huawei", "juniper"} <= set(names)
    assert not any(f.startswith("vendor") for f in BUILTIN_FILES)
    d = load_builtin()
    assert all(a.vendor != 8164 for a in d.avps.values())  # Starent is not there by default


def test_every_vendor_dictionary_loads_beside_the_others() -> None:
    d = load_builtin()
    n0 = len(d.avps)
    counts = load_extra([resolve(f"vendor:{n}") for n in vendor_names()], dictionary=d)
    assert all(n > 0 for n in counts.values())
    assert len(d.avps) - n0 >= 800 and not d.conflicts
    assert d.avp("SN-IP-Pool-Name").key == (8, 8164)
    assert d.avp(131072, 5771).name == "Cisco-Charging-Rule-Definition"


def test_unknown_vendor_name_lists_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match="starent"):
        resolve("vendor:acme")
    assert resolve("/some/file.json") == "/some/file.json"


def test_config_loads_a_vendor_dictionary_by_name(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[dictionaries]\nfiles = ["vendor:starent"]\n')
    load_config(str(cfg), env={})
    from chargegw.codec import get_dictionary

    assert get_dictionary().avp("SN-IP-Pool-Name").vendor == 8164
    m = Message(code=272, app_id=4, sn_ip_pool_name="pool-1")
    assert Message.decode(m.encode()).sn_ip_pool_name == "pool-1"
    bad = tmp_path / "b.toml"
    bad.write_text('[dictionaries]\nfiles = ["vendor:acme"]\n')
    with pytest.raises(ConfigError, match=r"dictionaries.files\[0\]"):
        load_config(str(bad), env={})


def test_shipped_vendor_files_are_current() -> None:
    if not Path("/usr/share/wireshark/diameter/Starent.xml").is_file():
        pytest.skip("Wireshark's dictionaries are not installed")
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_vendor_dictionaries.py"), "--check"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
