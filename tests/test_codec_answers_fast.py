"""The generic-grammar protocol error (E bit) is assembled from octets for speed: its bytes
must equal what the general builder makes, for well-formed and for mangled requests."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from chargegw.codec import DiameterError, Message, answers, commands
from chargegw.codec.header import HEADER

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def slow(raw: bytes, err: DiameterError) -> bytes:
    return answers._build(
        answers._Source(raw), err, "gw.example", "example", None, None,
        answers.get_dictionary(), failed=[], by_grammar=True,
    )  # fmt: skip


def requests() -> list[bytes]:
    out = [
        commands.CreditControlRequest(
            session_id="gw;1;2", origin_host="a", origin_realm="b", destination_realm="c",
            auth_application_id=4, service_context_id="x", cc_request_type=1,
            cc_request_number=0, proxy_info=[{"proxy_host": "p1", "proxy_state": b"st"},
                                             {"proxy_host": "p2", "proxy_state": b"x"}],
        ).encode(),
        commands.DeviceWatchdogRequest(origin_host="a", origin_realm="b").encode(),
    ]  # fmt: skip
    for f in sorted(VECTORS.glob("*ccr*.hex")):
        out.append(bytes.fromhex("".join(f.read_text().split())))
    return out


def test_fast_equals_general_builder_for_every_protocol_error() -> None:
    for raw in requests():
        for code in (3001, 3002, 3004, 3007, 3010):
            for text in ("", "no worker has a free slot", "x" * 300):
                err = DiameterError(code, text)
                assert answers.error_answer(raw, err, "gw.example", "example") == slow(raw, err)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fast_equals_general_builder_for_mangled_requests(data: st.DataObject) -> None:
    raw = bytearray(data.draw(st.sampled_from(requests())))
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(20, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(20, len(raw)))
    buf = bytes(raw[:cut])
    err = DiameterError(3004, "busy")
    fast, general = answers.error_answer(buf, err, "gw.example", "example"), slow(buf, err)
    # The general builder copies a request AVP's padding as received; the fast one sends
    # zeros there, as RFC 6733 4 requires. Everything else is equal.
    pads = padding(fast)
    assert all(fast[i] == 0 for i in pads)
    assert bytes(0 if i in pads else b for i, b in enumerate(general)) == fast


def padding(msg: bytes) -> set[int]:
    """Offsets of the padding octets after each top-level AVP."""
    out: set[int] = set()
    pos = 20
    while pos + 8 <= len(msg):
        n = int.from_bytes(msg[pos + 5 : pos + 8], "big")
        out.update(range(pos + n, pos + ((n + 3) & ~3)))
        pos += (n + 3) & ~3
    return out


def test_an_error_message_that_will_not_encode_still_gets_an_answer() -> None:
    """Error-Message text can carry what a request held (read with surrogateescape): the
    fast path must not raise; the general builder drops what will not encode."""
    raw = requests()[0]
    err = DiameterError(3008, "bad value \udcff in the request")
    m = Message.decode(answers.error_answer(raw, err, "gw.example", "example"))
    assert m.get("Result-Code") == 3008 and m.get("Session-Id") == "gw;1;2"
    assert m.get("Error-Message") == "bad value \\udcff in the request"


def _avp(name: str, data: bytes, *, vendor: int | None = None, flags: int = 0x40) -> bytes:
    """One AVP by dictionary name, assembled by hand so that its flags (a V bit on a base
    AVP) and data (the Proxy-Info code's octets inside another value) can be odd."""
    code = answers.get_dictionary().avp(name).code
    head = code.to_bytes(4, "big")
    if vendor is not None:
        n = 12 + len(data)
        head += bytes([flags | 0x80]) + n.to_bytes(3, "big") + vendor.to_bytes(4, "big")
    else:
        n = 8 + len(data)
        head += bytes([flags]) + n.to_bytes(3, "big")
    return head + data + b"\0" * (-n % 4)


def _proxy(host: bytes, state: bytes) -> bytes:
    return _avp("Proxy-Info", _avp("Proxy-Host", host) + _avp("Proxy-State", state))


PROXY_CODE = answers.get_dictionary().avp("Proxy-Info").code.to_bytes(4, "big")
_PIECES = {
    "sid": lambda s: _avp("Session-Id", s),
    "sid_vendor": lambda s: _avp("Session-Id", s, vendor=10415),
    "proxy": lambda s: _proxy(b"p.example", s),
    "proxy_vendor": lambda s: _avp("Proxy-Info", s, vendor=10415),
    "code_in_data": lambda s: _avp("Origin-Host", s + PROXY_CODE + s),  # a false alarm
    "other": lambda s: _avp("Origin-Realm", s),
    "short": lambda s: b"\0\0\1\7\x40\0\0\4",  # length below a header: the walk stops
}


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(_PIECES)), st.binary(min_size=0, max_size=9)),
        max_size=6,
    ),
    st.integers(0, 3),
)
def test_fast_equals_general_builder_wherever_session_id_and_proxy_info_are(
    pieces: list[tuple[str, bytes]], cut: int
) -> None:
    """The fast answer takes a first-place Session-Id without a walk and skips the walk when
    the Proxy-Info code's octets are absent: wherever the two AVPs are (first or not,
    V-flagged, after a malformed AVP, their code in another value), it equals the general
    builder's answer."""
    body = b"".join(_PIECES[k](s) for k, s in pieces)
    body = body[: len(body) - cut] if cut < len(body) else body
    raw = HEADER.pack(0x01000000 | (20 + len(body)), 0xC0 << 24 | 272, 4, 7, 9) + body  # a CCR
    err = DiameterError(3004, "busy")
    fast, general = answers.error_answer(raw, err, "gw.example", "example"), slow(raw, err)
    pads = padding(fast)
    assert all(fast[i] == 0 for i in pads)
    assert bytes(0 if i in pads else b for i, b in enumerate(general)) == fast


def test_when_every_builder_fails_the_last_resort_still_answers(monkeypatch) -> None:
    """`_minimal`: header, Result-Code, Origin-Host, Origin-Realm, for when the general
    builder cannot encode at all (here: it always raises); the request's ids and command
    are kept, the E bit set for a protocol error."""

    def broken(*_a: object, **_k: object) -> bytes:
        raise ValueError("encoder broken")

    monkeypatch.setattr(answers, "_build", broken)
    monkeypatch.setattr(answers, "_generic", broken)  # the 3xxx fast path
    raw = requests()[0]
    req = Message.decode(raw)
    for code, e_bit in ((5012, False), (3004, True)):
        err = DiameterError(code, "x")
        m = Message.decode(answers.error_answer(raw, err, "gw.example", "example"))
        assert m.get("Result-Code") == code
        assert m.get("Origin-Host") == "gw.example" and m.get("Origin-Realm") == "example"
        names = ("Result-Code", "Origin-Host", "Origin-Realm")
        assert [a.code for a in m.avps] == [answers.get_dictionary().avp(n).code for n in names]
        assert (m.code, m.app_id, m.hop_by_hop, m.end_to_end) == (
            req.code, req.app_id, req.hop_by_hop, req.end_to_end
        )
        assert m.is_error == e_bit and not m.is_request
