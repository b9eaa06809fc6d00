"""chargegw.codec: pure encode/decode of Diameter messages (no sockets, no asyncio, no clock).

See docs/codec-api.md for the contract the other layers build on.
"""

from .avp import Avp, AvpContainer, EncodeError, Group
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
from .dictionary import Dictionary, DictionaryError, get_dictionary, load_extra
from .errors import AvpError, CodecError, DiameterError, FramingError, error_answer
from .header import DEFAULT_MAX_LENGTH, FrameReader, Header, parse_header
from .message import Message, class_for, decode_message
from .types import OtherAddress

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
    "ResultCode",
    "class_for",
    "decode_message",
    "error_answer",
    "get_dictionary",
    "load_extra",
    "parse_header",
]
