"""Load a Config from TOML plus environment overrides, failing early with the key path.

Environment overrides (for containers): `CHARGEGW_<SECTION>__<KEY>=value`, with a double
underscore between levels, case-insensitive: `CHARGEGW_POOL__DEADLINE=2.5`,
`CHARGEGW_IDENTITY__ORIGIN_HOST=gw1.example.net`, `CHARGEGW_DATA_DIR=/var/lib/chargegw`.
A numeric level indexes a list of tables: `CHARGEGW_LISTEN__0__PORT=3869`. A list value is
written as a TOML array (`["tcp://a:5555", "tcp://b:5555"]`) or, for a list of strings, as
a comma-separated string. `CHARGEGW_CONFIG` names the file when no `--config` is given.

Variables in `NOT_CONFIG` are process switches read elsewhere, not config keys; every other
`CHARGEGW_*` variable must name a key (a typo fails at start instead of being ignored).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import msgspec

from chargegw.config.schema import Config

ENV_PREFIX = "CHARGEGW_"
ENV_CONFIG_FILE = "CHARGEGW_CONFIG"
# CHARGEGW_* variables that are not config overrides: name -> who reads it.
NOT_CONFIG: dict[str, str] = {
    ENV_CONFIG_FILE: "the config file to load (this module)",
    "CHARGEGW_UVLOOP": "0 = asyncio's event loop even when uvloop is installed (peer/loop.py)",
    "CHARGEGW_MALLOC_TRIM": "0 = never hand freed heap back to the kernel (src/chargegw/memory.py)",
    "CHARGEGW_MEMLOG": "a directory for each process's memory figures (src/chargegw/memory.py)",
    "CHARGEGW_GC_TUNE": "0 = Python's default garbage-collector thresholds, no freeze"
    " (src/chargegw/memory.py)",
}


class ConfigError(Exception):
    """A config that cannot be used; the message names the key path (and env var)."""


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The effective Config: the file at `path` (or $CHARGEGW_CONFIG, or none: embedded
    defaults), then `CHARGEGW_*` overrides from `env` (default: os.environ)."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get(ENV_CONFIG_FILE) or None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path!r} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {path!r} cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from None
    origins = apply_env(data, env)
    config = convert(data, origins, path)
    load_dictionaries(config)
    return config


def load_dictionaries(config: Config) -> None:
    """Load `dictionaries.files` into this process's codec dictionary, before any message is
    decoded; a bad or conflicting file is a config error naming its key path."""
    from chargegw.codec.dictionaries import resolve
    from chargegw.codec.dictionary import DictionaryError, load_extra

    for i, path in enumerate(config.dictionaries.files):
        try:  # "vendor:<name>" names a shipped optional vendor dictionary
            load_extra([resolve(path)], on_conflict=config.dictionaries.on_conflict)
        except (DictionaryError, OSError) as exc:
            raise ConfigError(f"config error: dictionaries.files[{i}] ({path}): {exc}") from None


def convert(
    data: Mapping[str, Any], origins: Mapping[str, str] | None = None, path: str | None = None
) -> Config:
    try:
        return msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(str(exc), origins or {}, path)) from None


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_KEYED = re.compile(r"^(?P<key>[A-Za-z_][\w\[\].]*): (?P<what>.*)$", re.S)


def _describe(text: str, origins: Mapping[str, str], path: str | None) -> str:
    m = _AT.match(text)
    msg, at = (m.group("msg"), m.group("path") or "") if m else (text, "")
    key = at.lstrip(".")
    if u := _UNKNOWN.match(msg):
        key = _join(key, u.group("key"))
        msg = "unknown key"
    elif k := _KEYED.match(msg):
        key = _join(key, k.group("key"))
        msg = k.group("what")
    where = f" (from {origins[key]})" if key in origins else ""
    src = f" in {path}" if path else ""
    return f"config error{src}: {key or '(top level)'}{where}: {msg}"


def _join(base: str, key: str) -> str:
    if not base:
        return key
    return f"{base}{key}" if key.startswith("[") else f"{base}.{key}"


def apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Apply CHARGEGW_* overrides to `data` in place; return {key path: env var name}."""
    origins: dict[str, str] = {}
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NOT_CONFIG:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(f"config error: environment variable {name}: empty key level")
        key_path = _key_path(parts)
        try:
            _set(data, parts, _parse_value(env[name], _field_type(parts)))
        except (KeyError, IndexError, TypeError) as exc:
            raise ConfigError(f"config error: {key_path} (from {name}): {exc}") from None
        origins[key_path] = f"{name}={env[name]!r}"
    return origins


def _key_path(parts: list[str]) -> str:
    out = ""
    for p in parts:
        out = _join(out, f"[{p}]" if p.isdigit() else p)
    return out


def _set(data: dict[str, Any] | list[Any], parts: list[str], value: Any) -> None:
    cur: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part.isdigit():
            if not isinstance(cur, list):
                raise TypeError("a numeric level needs a list of tables here")
            idx = int(part)
            if idx > len(cur):
                raise IndexError(f"index {idx} skips entries (the list has {len(cur)})")
            if idx == len(cur):
                cur.append({} if not last else value)
            if last:
                cur[idx] = value
            else:
                cur = cur[idx]
        else:
            if not isinstance(cur, dict):
                raise TypeError(f"{part!r} cannot be set inside a non-table value")
            if last:
                cur[part] = value
            else:
                nxt = cur.get(part)
                if nxt is None:
                    nxt = [] if parts[i + 1].isdigit() else {}
                    cur[part] = nxt
                cur = nxt


def _field_type(parts: list[str]) -> str:
    """'list' when the target field is a list of strings, 'other' otherwise (best effort)."""
    info: Any = msgspec.inspect.type_info(Config)
    for part in parts:
        while isinstance(info, msgspec.inspect.UnionType):
            info = next(
                (t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)), info
            )
            if isinstance(info, msgspec.inspect.UnionType):
                break
        if isinstance(info, msgspec.inspect.ListType) and part.isdigit():
            info = info.item_type
        elif isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.name == part), None)
            if info is None:
                return "other"
        else:
            return "other"
    if isinstance(info, msgspec.inspect.ListType) and isinstance(
        info.item_type, msgspec.inspect.StrType
    ):
        return "strlist"
    return "other"


def _parse_value(raw: str, kind: str) -> Any:
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise TypeError(f"{raw!r} is not a valid TOML array or table: {exc}") from None
    if kind == "strlist":
        return [p.strip() for p in text.split(",") if p.strip()]
    # Scalars stay strings; msgspec's lax mode turns "3869" / "true" / "2.5" into the
    # field's type, and a str field keeps "007" as written.
    return raw
