"""docs/configuration.md is generated from the schema and stays current; every key of the
schema appears in config/default.toml; the environment names the reference gives are the
ones the loader reads."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from chargegw.config import load_config
from chargegw.config.schema import Config

ROOT = Path(__file__).resolve().parents[1]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_config_reference", ROOT / "tools" / "gen_config_reference.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


gen = _tool()


def test_configuration_reference_is_current() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == gen.render(), (
        "docs/configuration.md is out of date: run python tools/gen_config_reference.py"
    )


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    out.write_text("stale\n")
    assert gen.main(["--check", "--out", str(out)]) == 1
    assert gen.main(["--out", str(out)]) == 0
    assert gen.main(["--check", "--out", str(out)]) == 0


def test_every_schema_key_appears_in_default_toml() -> None:
    schema = gen.schema_keys()
    facts = gen.toml_keys()
    shown = facts.keys | facts.tables
    assert not sorted(schema - shown), "keys missing from config/default.toml"
    # ... and default.toml (its commented examples included) shows no key the schema lacks,
    # outside the free-form [applications.config].
    free = {"applications.config"}
    unknown = {k for k in shown - schema if not any(k.startswith(f + ".") for f in free)}
    assert not sorted(unknown), "keys in config/default.toml the schema does not have"


def test_reference_lists_every_key_with_type_default_and_environment() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for table in gen.walk():
        for key in table.keys:
            assert f"| `{key.name}` | {key.type} | `" in text
            assert f"`{key.env}`" in text
    # A key added to the schema shows up without anyone remembering the docs.
    assert "`CHARGEGW_POOL__DEADLINE`" in text and "`CHARGEGW_LISTEN__<n>__TLS__CERT`" in text
    assert "`CHARGEGW_LOGGING__FORMAT`" in text


def _env_value(default: str) -> str:
    return json.loads(default) if default.startswith('"') else default


def test_the_environment_names_are_the_ones_the_loader_reads() -> None:
    """Setting each non-list key through the name the reference gives reaches that key."""
    expected = msgspec.to_builtins(Config())
    checked = 0
    for table in gen.walk():
        for key in table.keys:
            if "<" in key.env or key.default == "(required)":
                continue
            cfg = msgspec.to_builtins(load_config(None, env={key.env: _env_value(key.default)}))
            assert cfg == expected, key.env
            checked += 1
    assert checked > 50
    # ... and a changed value lands on the key named (not only "no error").
    cfg = load_config(None, env={"CHARGEGW_LOGGING__REPEAT_INTERVAL": "2.5"})
    assert cfg.logging.repeat_interval == 2.5
    cfg = load_config(None, env={"CHARGEGW_LISTEN__0__PORT": "3999"})
    assert cfg.listen[0].port == 3999


@pytest.mark.parametrize("name", ["default.toml"])
def test_commented_examples_are_valid_toml_for_the_schema(name: str) -> None:
    """The commented-out examples, uncommented, load: an operator can copy them."""
    lines = (ROOT / "config" / name).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# [listen.tls]"))
    block = []
    for line in lines[start:]:
        body = line[2:] if line.startswith("# ") else ""
        if re.match(r"\[|[A-Za-z_][\w-]*\s*=", body):
            block.append(body)
    text = "\n".join(block)
    # Put the [listen.tls] example under a listener, as it belongs.
    text = text.replace("[listen.tls]", '[[listen]]\ntransport = "tls"\n[listen.tls]', 1)
    import tomllib

    data = tomllib.loads(text)
    data["listen"][0]["tls"]["cert"] = "x"
    data["listen"][0]["tls"]["key"] = "y"
    from chargegw.config.loader import convert

    cfg = convert(data)
    assert cfg.peers[0].name == "pcrf1.operator.example"
    assert cfg.routes[0].peers == ["pcrf1.operator.example"]
    assert cfg.applications[0].config == {"example_key": "value"}
