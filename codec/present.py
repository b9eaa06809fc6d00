"""How AVP values show: text for `dump`, JSON-ready values for `to_dict` and the CLI."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any

from .avp import Avp
from .errors import CodecError
from .types import OtherAddress, text_octets


def _show(a: Avp, v: Any) -> str:
    if isinstance(v, bytes):
        if a._defn is None:
            return "0x" + v.hex()
        try:
            s = v.decode("ascii")
            if s.isprintable():
                return f"{v!r}"
        except UnicodeDecodeError:
            pass
        return "0x" + v.hex()
    if isinstance(v, IntEnum):
        return f"{v.name} ({int(v)})"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, OtherAddress):
        return f"family {v.family}: 0x{bytes(v.data).hex()}"
    return str(v)


def json_value(v: Any) -> Any:
    if hasattr(v, "to_list"):  # a Group
        return v.to_list()
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:  # octets that are not UTF-8, kept as lone surrogates
            return text_octets(v).decode("utf-8", "backslashreplace")
        return v
    if isinstance(v, float) or v is None:
        return v
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, OtherAddress):
        return {"family": v.family, "data": bytes(v.data).hex()}
    return str(v)


def _avp_dict(a: Avp) -> dict[str, Any]:
    d: dict[str, Any] = {"name": a.name, "code": a.code}
    if a.vendor:
        d["vendor"] = a.vendor
    d["flags"] = a.flags
    try:
        v = a.value
        d["value"] = json_value(v)
    except CodecError as exc:
        d["error"] = exc.error_message
        d["result_code"] = exc.result_code
        d["data"] = a.data.hex()
        return d
    if isinstance(v, IntEnum):
        d["enum"] = v.name
    return d
