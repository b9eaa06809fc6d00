"""The `[dictionaries]` config section: extra dictionary files loaded at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargegw.codec import Message, get_dictionary
from chargegw.config import ConfigError, load_config


def _write(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


def _dict_file(tmp_path: Path, avps: list[dict]) -> Path:
    spec = {"name": "site", "vendors": [{"id": 99991, "name": "Example"}], "avps": avps}
    return _write(tmp_path, "site.json", json.dumps(spec))


def test_extra_dictionary_is_loaded_and_used(tmp_path: Path) -> None:
    f = _dict_file(
        tmp_path,
        [{"name": "Example-Counter", "code": 7, "vendor": 99991, "type": "Unsigned32", "m": False}],
    )
    cfg = _write(tmp_path, "c.toml", f'[dictionaries]\nfiles = ["{f}"]\n')
    load_config(str(cfg), env={})
    d = get_dictionary()
    assert d.avp("Example-Counter").code == 7
    m = Message(code=999, app_id=99, example_counter=5)
    assert Message.decode(m.encode()).example_counter == 5


def test_conflicting_dictionary_fails_naming_the_key(tmp_path: Path) -> None:
    before = len(get_dictionary().avps)
    f = _dict_file(tmp_path, [{"name": "Not-Session-Id", "code": 263, "type": "UTF8String"}])
    cfg = _write(tmp_path, "c.toml", f'[dictionaries]\nfiles = ["{f}"]\n')
    with pytest.raises(ConfigError) as exc:
        load_config(str(cfg), env={})
    text = str(exc.value)
    assert "dictionaries.files[0]" in text and "Session-Id" in text and "Not-Session-Id" in text
    assert len(get_dictionary().avps) == before  # nothing half-loaded


def test_skip_policy_keeps_the_builtin_definition(tmp_path: Path) -> None:
    f = _dict_file(tmp_path, [{"name": "Not-Session-Id", "code": 263, "type": "UTF8String"}])
    cfg = _write(tmp_path, "c.toml", f'[dictionaries]\nfiles = ["{f}"]\non_conflict = "skip"\n')
    load_config(str(cfg), env={})
    assert get_dictionary().avp(263).name == "Session-Id"


def test_bad_policy_and_missing_file(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "c.toml", '[dictionaries]\non_conflict = "merge"\n')
    with pytest.raises(ConfigError, match="on_conflict"):
        load_config(str(cfg), env={})
    cfg = _write(tmp_path, "d.toml", f'[dictionaries]\nfiles = ["{tmp_path}/nope.xml"]\n')
    with pytest.raises(ConfigError, match=r"dictionaries\.files\[0\]"):
        load_config(str(cfg), env={})
