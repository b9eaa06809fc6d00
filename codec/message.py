"""Diameter messages, and the command classes generated from the dictionary.

`Message.decode` parses the header and indexes the top-level AVPs; nothing else is decoded
until it is read. Every command the dictionary defines gets a request and an answer class
(`CreditControlRequest`, `CreditControlAnswer`, ...) with its grammar attached, so AVPs
read as lists exactly where the grammar allows several.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .avp import Avp, encode_avps, scan_into
from .constants import FLAG_ERROR, FLAG_PROXIABLE, FLAG_REQUEST, FLAG_RETRANSMIT
from .container import AvpContainer
from .dictionary import CommandDef, Dictionary, Grammar, get_dictionary
from .errors import AvpError, FramingError
from .header import DEFAULT_MAX_LENGTH, HEADER, Header, header_fault

if TYPE_CHECKING:
    from .peek import Peek

_SESSION_ID = (263, 0)
_PROXY_INFO = (284, 0)


class Message(AvpContainer):
    """A Diameter message. Also the generic class for commands the dictionary lacks."""

    __slots__ = ("code", "app_id", "flags", "hop_by_hop", "end_to_end")

    code: int
    app_id: int
    flags: int
    hop_by_hop: int
    end_to_end: int

    _command: CommandDef | None = None
    _is_request: bool | None = None
    _grammar: Grammar | None = None

    def __init__(
        self,
        *,
        code: int | None = None,
        app_id: int | None = None,
        flags: int | None = None,
        hop_by_hop: int = 0,
        end_to_end: int = 0,
        dictionary: Dictionary | None = None,
        **avps: Any,
    ) -> None:
        cmd = self._command
        if cmd is not None:
            code = cmd.code if code is None else code
            if app_id is None:
                app_id = cmd.app_id if cmd.app_id is not None else 0
            if flags is None:
                flags = (FLAG_REQUEST if self._is_request else 0) | (
                    FLAG_PROXIABLE if cmd.proxiable else 0
                )
        if code is None:
            raise TypeError("a generic Message needs code=")
        self.code = code
        self.app_id = app_id or 0
        self.flags = FLAG_REQUEST if flags is None else flags
        self.hop_by_hop = hop_by_hop
        self.end_to_end = end_to_end
        self._dict = dictionary or get_dictionary()
        self._avps = []
        self._keys = self._offs = None
        self._scan = 20
        self._vals = None
        self._buf = None
        self._start = 20
        self._end = 20
        self._dirty = True
        if avps:
            self._fill(avps)

    # -- decoding ---------------------------------------------------------------------

    @classmethod
    def decode(
        cls,
        data: bytes | bytearray | memoryview,
        *,
        dictionary: Dictionary | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> Message:
        """One whole message. Framing faults raise FramingError, AVP structure AvpError
        (with `.header` set, so that an answer can still carry hop-by-hop and end-to-end)."""
        buf = data if type(data) is bytes else bytes(data)
        n = len(buf)
        if n < 20:
            raise FramingError(f"message shorter than a header ({n} octets)", 5015)
        vl, fc, app, hbh, e2e = HEADER.unpack_from(buf, 0)
        length = vl & 0xFFFFFF
        if vl >> 24 != 1 or length < 20 or length & 3 or length > max_length:
            raise header_fault(vl, max_length)  # type: ignore[misc]
        if length != n:
            raise FramingError(f"length field says {length} octets, the buffer holds {n}", 5015)
        flags = fc >> 24
        code = fc & 0xFFFFFF
        m = _shell(buf, dictionary or get_dictionary(), flags, code, app, hbh, e2e, length)
        keys: list[int] = []
        offs: list[int] = []
        m._keys = keys
        m._offs = offs
        m._scan = length
        try:
            scan_into(buf, 20, length, keys, offs, -1, m._dict.avps)
        except AvpError as exc:
            exc.header = Header(1, length, flags, code, app, hbh, e2e)
            raise
        return m

    @classmethod
    def from_peek(
        cls, data: bytes, p: Peek | Header, *, dictionary: Dictionary | None = None
    ) -> Message:
        """The message that `peek(data)` read, without walking its AVPs a second time: the
        header comes from the peek, and the top-level index is built on the first read, as
        far as that read needs (a handler that reads nothing costs no walk at all). peek has
        checked the AVP framing, so these reads raise nothing that decode would not have."""
        _, length, flags, code, app, hbh, e2e = p[:7]
        if len(data) != length:
            raise FramingError(f"the peek says {length} octets, the buffer holds {len(data)}", 5015)
        return _shell(data, dictionary or get_dictionary(), flags, code, app, hbh, e2e, length)

    @property
    def header(self) -> Header:
        n = self._end if self._buf is not None and not self._changed() else len(self.encode())
        return Header(1, n, self.flags, self.code, self.app_id, self.hop_by_hop, self.end_to_end)

    # -- header -----------------------------------------------------------------------

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_REQUEST)

    @property
    def is_proxiable(self) -> bool:
        return bool(self.flags & FLAG_PROXIABLE)

    @is_proxiable.setter
    def is_proxiable(self, on: bool) -> None:
        self._flag(FLAG_PROXIABLE, on)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)

    @is_error.setter
    def is_error(self, on: bool) -> None:
        self._flag(FLAG_ERROR, on)

    @property
    def is_retransmit(self) -> bool:
        return bool(self.flags & FLAG_RETRANSMIT)

    @is_retransmit.setter
    def is_retransmit(self, on: bool) -> None:
        self._flag(FLAG_RETRANSMIT, on)

    def _flag(self, bit: int, on: bool) -> None:
        self.flags = (self.flags | bit) if on else (self.flags & ~bit)

    @property
    def command_name(self) -> str:
        cmd = self._command
        base = cmd.name if cmd is not None else f"Command-{self.code}"
        return base + ("-Request" if self.is_request else "-Answer")

    # -- encoding ---------------------------------------------------------------------

    @property
    def raw(self) -> bytes | None:
        """The bytes this message was decoded from, if nothing has changed since."""
        buf = self._buf
        if buf is None or self._changed():
            return None
        if HEADER.unpack_from(buf, 0)[1:] != (
            (self.flags << 24) | self.code,
            self.app_id,
            self.hop_by_hop,
            self.end_to_end,
        ):
            return None
        raw: bytes = buf
        return raw

    def encode(self) -> bytes:
        buf = self._buf
        if buf is not None and not self._changed():
            head = HEADER.pack(
                (1 << 24) | self._end,
                (self.flags << 24) | self.code,
                self.app_id,
                self.hop_by_hop,
                self.end_to_end,
            )
            out: bytes = buf if buf[:20] == head else head + buf[20 : self._end]
            return out
        parts: list[bytes] = [b""]
        n = 20 + encode_avps(self._items(), parts)
        parts[0] = HEADER.pack(
            (1 << 24) | n,
            (self.flags << 24) | self.code,
            self.app_id,
            self.hop_by_hop,
            self.end_to_end,
        )
        return b"".join(parts)

    # -- answers ----------------------------------------------------------------------

    def answer(
        self,
        result_code: int | None = None,
        *,
        origin_host: str | None = None,
        origin_realm: str | None = None,
        error_message: str | None = None,
        failed_avp: Avp | list[Avp] | None = None,
        **avps: Any,
    ) -> Message:
        """The answer RFC 6733 6.2 describes: same ids and code, Session-Id and Proxy-Info copied."""
        d = self._dict
        klass = d.classes.get((self.app_id, self.code, False))
        if klass is None:
            klass = class_for(d, self.app_id, self.code, False)
        flags = self.flags & FLAG_PROXIABLE
        if result_code is not None and 3000 <= result_code < 4000:
            flags |= FLAG_ERROR
        # what klass(code=..., ..., dictionary=d) makes, without the keyword call (hot path)
        ans: Message = klass.__new__(klass)
        ans.code = self.code
        ans.app_id = self.app_id
        ans.flags = flags
        ans.hop_by_hop = self.hop_by_hop
        ans.end_to_end = self.end_to_end
        ans._dict = d
        ans._avps = []
        ans._keys = ans._offs = ans._vals = ans._buf = None
        ans._scan = ans._start = ans._end = 20
        ans._dirty = True
        kw: dict[str, Any] = {}
        sid = self._copies(263)
        if sid:
            kw["session_id"] = sid[0]
        if origin_host is not None:
            kw["origin_host"] = origin_host
        if origin_realm is not None:
            kw["origin_realm"] = origin_realm
        if result_code is not None:
            kw["result_code"] = result_code
        if error_message is not None:
            kw["error_message"] = error_message
        if failed_avp is not None:
            inner = failed_avp if isinstance(failed_avp, list) else [failed_avp]
            kw["failed_avp"] = [a.copy() for a in inner]
        kw.update(avps)
        proxy = self._copies(284)
        if proxy:
            kw["proxy_info"] = proxy
        ans._fill(kw)
        return ans

    # -- validation and presentation --------------------------------------------------

    def find_errors(
        self, *, limit: int | None = None, codes: frozenset[int] | None = None
    ) -> list[AvpError]:
        from .validate import find_errors

        return find_errors(self, limit=limit, codes=codes)

    def check_values(self) -> None:
        """Raise the first value fault (5004 or 5014, with its Failed-AVP) at any depth.

        Reading does not judge (a string that is not valid text reads as the octets it came
        from); an application that stores or compares what it reads, without validating the
        whole message, calls this first: the faults that reading used to raise."""
        from .validate import VALUE_FAULTS, find_errors

        errs = find_errors(self, limit=1, codes=VALUE_FAULTS)
        if errs:
            raise errs[0]

    def validate(self) -> None:
        """Raise the first fault the answer must report (3008, 3009, 5001, 5004, 5005, ...)."""
        errs = self.find_errors(limit=1)
        if errs:
            raise errs[0]

    def header_dict(self) -> dict[str, Any]:
        return {
            "command": self.command_name,
            "code": self.code,
            "application": self.app_id,
            "flags": self.flags,
            "flag_letters": _flag_letters(self.flags),
            "hop_by_hop": self.hop_by_hop,
            "end_to_end": self.end_to_end,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"header": self.header_dict(), "avps": self.to_list()}

    def dump(self) -> str:
        length = self._end if self._buf is not None and not self._changed() else len(self.encode())
        lines = [
            f"{self.command_name} <code {self.code}, app {self.app_id}, flags 0x{self.flags:02x} "
            f"({_flag_letters(self.flags)}), hbh 0x{self.hop_by_hop:08x}, e2e 0x{self.end_to_end:08x}, "
            f"length {length}>"
        ]
        self._dump_lines(lines, 1)
        return "\n".join(lines)

    def __repr__(self) -> str:
        sid = None
        try:
            sid = self.get("Session-Id")
        except Exception:  # noqa: BLE001 - a repr must not raise on a broken message
            pass
        return (
            f"<{type(self).__name__} code={self.code} app={self.app_id} flags=0x{self.flags:02x} "
            f"hbh=0x{self.hop_by_hop:08x} session={sid!r} avps={len(self._items())}>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]


def _flag_letters(flags: int) -> str:
    return "".join(
        c if flags & b else "-" for c, b in zip("RPET", (0x80, 0x40, 0x20, 0x10), strict=True)
    )


def class_for(d: Dictionary, app_id: int, code: int, request: bool) -> type[Message]:
    """The generated class for (application, command, R bit), or Message itself."""
    key = (app_id, code, request)
    klass = d.classes.get(key)
    if klass is None:
        cmd = d.command(code, app_id)
        klass = command_class(d, cmd, request) if cmd is not None else Message
        d.classes[key] = klass
    return klass


def command_class(d: Dictionary, cmd: CommandDef, request: bool) -> type[Message]:
    key = (id(cmd), request)
    klass = d.classes.get(key)
    if klass is None:
        name = cmd.class_name + ("Request" if request else "Answer")
        klass = type(
            name,
            (Message,),
            {
                "__slots__": (),
                "__module__": "chargegw.codec.commands",
                "__doc__": f"{cmd.name}-{'Request' if request else 'Answer'} "
                f"(code {cmd.code}, application {cmd.app_id if cmd.app_id is not None else 'any'}; "
                f"{cmd.source}).",
                "_command": cmd,
                "_is_request": request,
                "_grammar": cmd.request if request else cmd.answer,
            },
        )
        d.classes[key] = klass
    return klass


def _shell(
    buf: bytes, d: Dictionary, flags: int, code: int, app: int, hbh: int, e2e: int, length: int
) -> Message:
    """A message of the dictionary's class for its command over `buf`, not yet indexed."""
    klass = d.classes.get((app, code, flags >= 0x80))
    if klass is None:
        klass = class_for(d, app, code, flags >= 0x80)
    m: Message = klass.__new__(klass)
    m.code = code
    m.app_id = app
    m.flags = flags
    m.hop_by_hop = hbh
    m.end_to_end = e2e
    m._dict = d
    m._buf = buf
    m._start = m._scan = 20
    m._end = length
    m._dirty = False
    m._avps = m._keys = m._offs = m._vals = None
    return m


def decode_message(data: bytes | bytearray | memoryview, **kw: Any) -> Message:
    return Message.decode(data, **kw)
