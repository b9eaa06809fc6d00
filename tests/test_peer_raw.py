"""The request path reads a request once, by the codec's peek (issue 9), in memory.

A handler registered raw (`Node.add_raw_handler`, a `RawHandler` in the handler table) gets
the octets and the peek; a Message handler gets a Message over the same octets whose index
is built only when it reads. Either way every check the Node makes on a request (header
bits, AVP framing, destination, loops, duplicates, the grammar with `validate_requests`) is
made from the peek before the handler runs, with the RFC 6733 answer for a bad request.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from chargegw import codec
from chargegw.codec import Avp, FrameReader, Message, Peek
from chargegw.codec.constants import CMD_CCR, ResultCode
from chargegw.peer import connection as connmod
from chargegw.peer.config import NodeConfig, PeerConfig
from chargegw.peer.errors import ProtocolError
from chargegw.peer.link import RawHandler
from chargegw.peer.testing import MemoryNode, PeerPair, make_cca, make_ccr, make_dwr, result_code

REALM = "test.example"
SERVER = "server.test.example"
CLIENT = "client.test.example"
KINDS = ["message", "raw"]
RC = ResultCode


def answer_ok(req: Message) -> Message:
    return make_cca(req, SERVER, REALM)


def served(kind: str, handler: Callable[..., Any] | None = None, **cfg: Any) -> PeerPair:
    """A client and a server in memory; the server's CCR handler is `handler` (default:
    answer 2001), registered as a Message handler or raw. `pair.calls` records its calls."""
    server = MemoryNode(
        NodeConfig(origin_host=SERVER, origin_realm=REALM, auth_apps=[4], **cfg),
        address=("127.0.0.9", 3868),
    )
    calls: list[Any] = []
    if kind == "message":

        def h(req: Message, peer: Any) -> Any:
            calls.append(req)
            return handler(req, peer) if handler else answer_ok(req)

        server.add_handler(4, h, CMD_CCR)
    else:

        def raw_h(data: bytes, p: Peek, peer: Any) -> Any:
            calls.append((data, p))
            return handler(data, p, peer) if handler else answer_ok(Message.decode(data)).encode()

        server.ctx.handlers[(4, CMD_CCR)] = RawHandler(raw_h)
        server.ctx.handler_apps.add(4)
    client = MemoryNode(
        NodeConfig(
            origin_host=CLIENT,
            origin_realm=REALM,
            auth_apps=[4],
            peers=[PeerConfig(SERVER, port=3868, realm=REALM)],
        )
    )
    pair = PeerPair(client, server).connect()
    assert pair.b_peer.usable
    pair.calls = calls  # type: ignore[attr-defined]
    return pair


def feed(pair: PeerPair, data: bytes | Message) -> bytes:
    """Put `data` on the server's link as the client would; the octets the server sends."""
    raw = data.encode() if isinstance(data, Message) else data
    m = pair.lb.machine
    pair.b.handle(m, m.receive_data(pair.lb, raw, pair.now), pair.now)
    return b"".join(pair.lb.data_to_send())


def decoded(out: bytes) -> list[Message]:
    return [Message.decode(f) for f in FrameReader().feed(out)]


def exchange(pair: PeerPair, data: bytes | Message) -> list[Message]:
    return decoded(feed(pair, data))


def ccr(**kw: Any) -> Message:
    kw.setdefault("hop_by_hop", 0x77)
    return make_ccr(CLIENT, REALM, REALM, **kw)


@contextmanager
def parse_counts() -> Iterator[dict[str, int]]:
    """How often a message is read: the peek, a decode, a lazy Message, an AVP walk."""
    counts = {"peek": 0, "decode": 0, "from_peek": 0, "scan_into": 0}
    mp = pytest.MonkeyPatch()

    def counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            counts[name] += 1
            return fn(*a, **kw)

        return wrapper

    mp.setattr(connmod, "peek", counted("peek", connmod.peek))
    decode, from_peek = Message.decode, Message.from_peek
    mp.setattr(Message, "decode", classmethod(counted("decode", decode.__func__)))  # type: ignore[attr-defined]
    mp.setattr(Message, "from_peek", classmethod(counted("from_peek", from_peek.__func__)))  # type: ignore[attr-defined]
    for mod in (codec.message, codec.attributes, codec.answers):
        mp.setattr(mod, "scan_into", counted("scan_into", mod.scan_into))
    try:
        yield counts
    finally:
        mp.undo()


def template_answer() -> tuple[bytes, bytes]:
    tmpl = answer_ok(ccr()).encode()
    return tmpl[:12], tmpl[20:]


# -- read once -----------------------------------------------------------------------------


def test_a_raw_handler_gets_the_octets_and_the_peek_and_nothing_else_parses_them() -> None:
    head, tail = template_answer()
    pair = served("raw", lambda data, p, peer: head + data[12:20] + tail)
    req = ccr(session_id="client;raw;1", hop_by_hop=0x1234)
    raw = req.encode()
    with parse_counts() as n:
        out = feed(pair, raw)
    assert n == {"peek": 1, "decode": 0, "from_peek": 0, "scan_into": 0}
    answers = decoded(out)
    ((data, p),) = pair.calls  # type: ignore[attr-defined]
    assert data == raw and isinstance(p, Peek)
    assert (p.code, p.app_id, p.hop_by_hop, p.end_to_end) == (CMD_CCR, 4, 0x1234, req.end_to_end)
    assert p.session_id == b"client;raw;1" and p.origin_host == CLIENT.encode()
    assert [result_code(a) for a in answers] == [2001] and answers[0].hop_by_hop == 0x1234


def test_a_message_handler_that_reads_nothing_costs_no_second_walk() -> None:
    head, tail = template_answer()
    pair = served("message", lambda req, peer: head + req.raw[12:20] + tail)
    req = ccr().encode()
    with parse_counts() as n:
        out = feed(pair, req)
    assert n == {"peek": 1, "decode": 0, "from_peek": 1, "scan_into": 0}
    answers = decoded(out)
    assert [result_code(a) for a in answers] == [2001]
    (msg,) = pair.calls  # type: ignore[attr-defined]
    # ... and it reads like a decoded one when it does read
    assert msg.cc_request_type == 1 and msg.raw_value("Origin-Host") == CLIENT.encode()
    assert msg.session_id == Message.decode(msg.raw).session_id


# -- every check, from the peek, for both kinds of handler ---------------------------------


def _with_bits(m: Message, bits: int) -> bytes:
    raw = bytearray(m.encode())
    raw[4] |= bits
    return bytes(raw)


def _bad_avp_length(m: Message) -> bytes:
    raw = bytearray(m.encode())
    first = struct.unpack_from("!I", raw, 24)[0] & 0xFFFFFF
    struct.pack_into("!I", raw, 24, (0x40 << 24) | (first + 4000))  # runs past the end
    return bytes(raw)


def _other_command() -> Message:
    m = Message(code=999, app_id=4, flags=0xC0, hop_by_hop=5, end_to_end=6)
    m.set("Session-Id", "client;cmd")
    m.set("Origin-Host", CLIENT)
    m.set("Origin-Realm", REALM)
    return m


def _other_app() -> Message:
    m = _other_command()
    m.code, m.app_id = CMD_CCR, 5
    return m


CASES: dict[str, tuple[Callable[[], bytes | Message], int]] = {
    "E bit": (lambda: _with_bits(ccr(), 0x20), RC.DIAMETER_INVALID_HDR_BITS),
    "AVP length": (lambda: _bad_avp_length(ccr()), RC.DIAMETER_INVALID_AVP_LENGTH),
    "Destination-Host": (
        lambda: ccr(dest_host="other.test.example"),
        RC.DIAMETER_UNABLE_TO_DELIVER,
    ),
    "Destination-Realm": (
        lambda: make_ccr(CLIENT, REALM, "elsewhere.example"),
        RC.DIAMETER_REALM_NOT_SERVED,
    ),
    "Route-Record loop": (lambda: ccr(route_record=[SERVER]), RC.DIAMETER_LOOP_DETECTED),
    "Route-Record loop, later": (
        lambda: ccr(route_record=["relay.example", SERVER.upper()]),
        RC.DIAMETER_LOOP_DETECTED,
    ),
    "command": (_other_command, RC.DIAMETER_COMMAND_UNSUPPORTED),
    "application": (_other_app, RC.DIAMETER_APPLICATION_UNSUPPORTED),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_request_gets_its_answer_and_never_reaches_the_handler(kind: str, case: str) -> None:
    make, rc = CASES[case]
    pair = served(kind)
    req = make()
    raw = req.encode() if isinstance(req, Message) else req
    answers = exchange(pair, raw)
    assert [result_code(a) for a in answers] == [rc]
    ans = answers[0]
    assert not ans.is_request and ans.hop_by_hop == int.from_bytes(raw[12:16], "big")
    assert ans.is_error == (3000 <= rc < 4000)
    if rc == RC.DIAMETER_INVALID_AVP_LENGTH:
        assert ans.get("Failed-AVP") is not None
    assert pair.calls == []  # type: ignore[attr-defined]
    assert result_code(exchange(pair, ccr())[0]) == 2001  # the connection serves on


@pytest.mark.parametrize("kind", KINDS)
def test_validate_requests_checks_the_grammar_before_either_handler(kind: str) -> None:
    pair = served(kind, validate_requests=True)
    req = ccr()
    req.cc_request_number = None  # required by the CCR grammar
    answers = exchange(pair, req)
    assert [result_code(a) for a in answers] == [RC.DIAMETER_MISSING_AVP]
    assert pair.calls == []  # type: ignore[attr-defined]
    assert result_code(exchange(pair, ccr())[0]) == 2001


@pytest.mark.parametrize("kind", KINDS)
def test_a_retransmission_gets_the_cached_answer_from_the_peek_key(kind: str) -> None:
    pair = served(kind)
    req = ccr(number=3)
    first = exchange(pair, req)
    again = exchange(pair, _with_bits(req, 0x10))  # the same end-to-end and Origin-Host, T
    assert len(pair.calls) == 1 and pair.b.ctx.stats["duplicates"] == 1  # type: ignore[attr-defined]
    assert again[0].encode() == first[0].encode()


def test_a_raw_handlers_error_is_answered_from_the_octets_and_not_cached() -> None:
    def refuse(data: bytes, p: Peek, peer: Any) -> bytes:
        raise ProtocolError(RC.DIAMETER_UNABLE_TO_COMPLY, "no")

    pair = served("raw", refuse)
    req = ccr(request_type=2, number=4, session_id="client;err")
    (ans,) = exchange(pair, req)
    # a 5xxx answer is the command's own answer: its required AVPs come from the octets
    assert result_code(ans) == 5012 and not ans.is_error
    assert (ans.session_id, ans.cc_request_type, ans.cc_request_number) == ("client;err", 2, 4)
    exchange(pair, _with_bits(req, 0x10))
    assert len(pair.calls) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["raised", "returned"])
def test_a_handlers_protocol_error_raised_or_returned_gets_one_answer(kind: str, how: str) -> None:
    """Returning a ProtocolError (the gateway's shed path) answers exactly as raising it
    does: its Result-Code with the E bit, the extra AVPs appended, counted, and not kept
    for duplicates (a T-flagged resend reaches the handler again)."""
    extra = Avp.new("Origin-State-Id", 77).encode()

    def refuse(*_args: Any) -> Any:
        err = ProtocolError(RC.DIAMETER_TOO_BUSY, "busy", extra=extra)
        if how == "raised":
            raise err
        return err

    pair = served(kind, refuse)
    req = ccr(request_type=1, number=0, session_id="client;busy")
    (ans,) = exchange(pair, req)
    assert result_code(ans) == RC.DIAMETER_TOO_BUSY and ans.is_error
    assert ans.session_id == "client;busy" and ans.hop_by_hop == 0x77
    assert ans.get("Error-Message") == "busy" and ans.get("Origin-State-Id") == 77
    counts = pair.b.ctx.commands.get(4, CMD_CCR).answers_out
    assert counts[3] == 1  # one 3xxx answer counted for the command
    (again,) = exchange(pair, _with_bits(req, 0x10))
    assert result_code(again) == RC.DIAMETER_TOO_BUSY
    assert len(pair.calls) == 2  # type: ignore[attr-defined]


def test_a_malformed_base_request_gets_5014_too() -> None:
    pair = served("message")
    raw = bytearray(make_dwr(CLIENT, REALM, hop_by_hop=0x99).encode())
    struct.pack_into("!I", raw, 24, (0x40 << 24) | 0xFFFF)  # its first AVP overruns
    (ans,) = exchange(pair, bytes(raw))
    assert result_code(ans) == RC.DIAMETER_INVALID_AVP_LENGTH and ans.hop_by_hop == 0x99
    assert ans.code == 280 and not ans.is_request
    assert pair.b_peer.usable
