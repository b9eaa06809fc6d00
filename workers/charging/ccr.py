"""The one CCR reader and the one CCA writer of Gy, compiled from the dictionary.

`CCR_FIELDS` names what the OCS reads of a Credit-Control-Request; `codec.compiled` turns it
and the dictionary's grammars into one walk over the bytes (no AVP code is written here) and
gives a view whose attributes are the codec's names (`v.cc_request_type`,
`v.multiple_services_credit_control[0].requested_service_unit.cc_time`, ...). Anything the
reader does not take as clean raises `Unreadable`, and the codec's validation decides the
answer (gy.py `_judge`). The CCA is encoded by one `Writer` in the grammar's order.
"""

from __future__ import annotations

from typing import Any

from chargegw.codec import get_dictionary
from chargegw.codec.compiled import Reader, Unreadable, Writer, compile_reader
from chargegw.codec.constants import APP_CREDIT_CONTROL

COMMAND = "Credit-Control"
APP_ID = APP_CREDIT_CONTROL  # Gx and Sd define a Credit-Control of their own

_UNITS: dict[str, Any] = {
    "CC-Time": True,
    "CC-Total-Octets": True,
    "CC-Input-Octets": True,
    "CC-Output-Octets": True,
    "CC-Service-Specific-Units": True,
    "CC-Money": {"Unit-Value": {"Value-Digits": True}},  # read only to refuse negatives
}

# What the OCS reads; the grammar's required AVPs (Origin-Host, CC-Request-Type, ...) are read
# whatever this says. Session-Id and Proxy-Info are kept as bytes too: the answer copies them.
CCR_FIELDS: dict[str, Any] = {
    "Session-Id": "avp",
    "Subscription-Id": {"Subscription-Id-Type": True, "Subscription-Id-Data": True},
    "Service-Identifier": True,
    "Requested-Service-Unit": _UNITS,
    "Requested-Action": True,
    "Used-Service-Unit": _UNITS,
    "Multiple-Services-Credit-Control": {
        "Requested-Service-Unit": _UNITS,
        "Used-Service-Unit": _UNITS,
        "Service-Identifier": True,
        "Rating-Group": True,
    },
    "CC-Correlation-Id": True,
    "Proxy-Info": "raw",
}

_reader: list[Reader] = []
_writer: list[Writer] = []


def reader() -> Reader:
    """The compiled CCR reader, compiled again when the dictionary has grown."""
    if not _reader or _reader[0].stale():
        _reader[:] = [compile_reader(get_dictionary(), COMMAND, CCR_FIELDS, app_id=APP_ID)]
    return _reader[0]


def writer() -> Writer:
    """The CCA writer (its memo of encoded leaves is shared by the process)."""
    if not _writer or _writer[0].d is not get_dictionary():
        _writer[:] = [Writer(get_dictionary(), COMMAND, app_id=APP_ID)]
    return _writer[0]


def read(raw: bytes) -> Any:
    """The CCR's view; Unreadable when the codec's validation must decide."""
    return reader().read(raw)


__all__ = ["CCR_FIELDS", "Unreadable", "read", "reader", "writer"]
