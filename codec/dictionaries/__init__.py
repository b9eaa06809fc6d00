"""chargegw.codec.dictionaries: the dictionary files.

The built-in ones (codec.dictionary.BUILTIN_FILES) are always loaded. The `vendor_<name>.json`
files (generated from Wireshark's vendor dictionaries by tools/gen_vendor_dictionaries.py) are
optional: a configuration names them as "vendor:<name>" in `[dictionaries] files`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

VENDOR_PREFIX = "vendor:"


def vendor_names() -> list[str]:
    """The optional vendor dictionaries shipped with chargegw ("cisco", "starent", ...)."""
    pkg = resources.files(__name__)
    return sorted(
        p.name[len("vendor_") : -len(".json")]
        for p in pkg.iterdir()
        if p.name.startswith("vendor_") and p.name.endswith(".json")
    )


def resolve(spec: str | Path) -> str | Path:
    """A dictionary file as a configuration names it: "vendor:<name>" is the shipped optional
    file of that name; anything else is a path, returned as it is. Raises FileNotFoundError
    naming the known vendors for an unknown name."""
    if not isinstance(spec, str) or not spec.startswith(VENDOR_PREFIX):
        return spec
    name = spec[len(VENDOR_PREFIX) :].strip().lower()
    res = resources.files(__name__) / f"vendor_{name}.json"
    if not res.is_file():
        raise FileNotFoundError(
            f"no vendor dictionary {name!r}; shipped: {', '.join(vendor_names())}"
        )
    return str(res)
