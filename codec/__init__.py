"""chargegw.codec: pure encode/decode of Diameter messages (no sockets, no asyncio, no clock).

See docs/codec-api.md for the contract the other layers build on.
"""

from . import attributes as _attributes  # noqa: F401 - installs the AVP properties
from .answers import error_answer
from .avp import Avp, EncodeError
from .constants import (
    APP_ACCOUNTING,
    APP_COMMON,
    APP_CREDIT_CONTROL,
    APP_CXDX,
    APP_EAP,
    APP_MIP4,
    APP_NASREQ,
    APP_RELAY,
    APP_SY,
    AVP_MANDATORY,
    AVP_VENDOR,
    FLAG_ERROR,
    FLAG_PROXIABLE,
    FLAG_REQUEST,
    FLAG_RETRANSMIT,
    DisconnectCause,
    ResultCode,
)
from .container import AvpContainer, Group
from .dictionary import Dictionary, DictionaryError, get_dictionary, load_extra
from .errors import AvpError, CodecError, DiameterError, FramingError
from .header import DEFAULT_MAX_LENGTH, FrameReader, Header, append_avps, parse_header
from .message import Message, class_for, decode_message
from .peek import ROUTING, Peek, avp_key, peek
from .types import OtherAddress, text_octets
from .validate import avp_errors

__all__ = [
    "APP_ACCOUNTING",
    "APP_COMMON",
    "APP_CREDIT_CONTROL",
    "APP_CXDX",
    "APP_EAP",
    "APP_MIP4",
    "APP_NASREQ",
    "APP_RELAY",
    "APP_SY",
    "AVP_MANDATORY",
    "AVP_VENDOR",
    "DEFAULT_MAX_LENGTH",
    "FLAG_ERROR",
    "FLAG_PROXIABLE",
    "FLAG_REQUEST",
    "FLAG_RETRANSMIT",
    "ROUTING",
    "Avp",
    "AvpContainer",
    "AvpError",
    "CodecError",
    "DiameterError",
    "Dictionary",
    "DictionaryError",
    "DisconnectCause",
    "EncodeError",
    "FrameReader",
    "FramingError",
    "Group",
    "Header",
    "Message",
    "OtherAddress",
    "Peek",
    "ResultCode",
    "avp_errors",
    "avp_key",
    "class_for",
    "decode_message",
    "error_answer",
    "get_dictionary",
    "load_extra",
    "parse_header",
    "append_avps",
    "peek",
    "text_octets",
]
