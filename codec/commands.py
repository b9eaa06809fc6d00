"""Every command class the built-in dictionary defines, importable by name.

    from chargegw.codec.commands import CreditControlRequest

The classes are generated from the dictionary (the one source of truth), on first use.
"""

from __future__ import annotations

from typing import Any

from .dictionary import get_dictionary
from .message import Message, command_class


def all_classes() -> dict[str, type[Message]]:
    d = get_dictionary()
    out: dict[str, type[Message]] = {}
    for cmd in d.commands.values():
        for request in (True, False):
            k = command_class(d, cmd, request)
            out[k.__name__] = k
    return out


def __getattr__(name: str) -> Any:
    classes = all_classes()
    if name in classes:
        return classes[name]
    raise AttributeError(f"no command class {name!r} in the dictionary")


def __dir__() -> list[str]:
    return sorted(all_classes())
