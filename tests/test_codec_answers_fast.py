"""The generic-grammar protocol error (E bit) is assembled from octets for speed: its bytes
must equal what the general builder makes, for well-formed and for mangled requests."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from chargegw.codec import DiameterError, Message, answers, commands

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
