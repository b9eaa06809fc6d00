"""The gateway <-> worker wire protocol: round trips, versioning, and junk never crashes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargegw.ipc import protocol as pp

SAMPLES: list[pp.PoolMessage] = [
    pp.Ready(worker_id="w1", credit=64, apps=[4, 3], gen=7, pid=123, host="h"),
    pp.Credit(n=3),
    pp.Request(
        id=1,
        peer="p.example",
        hbh=0xFFFFFFFF,
        app=4,
        cmd=272,
        deadline=1.5,
        raw=b"\x01" * 40,
        retransmit=True,
    ),
    pp.Request(id=2, peer="p", hbh=1, app=4, cmd=272, deadline=1.5, raw=b""),
    pp.Answer(id=9, raw=b"\x00\xff"),
    pp.Heartbeat(t=12.5, free=pp.DRAIN_ACK),
    pp.OutRequest(id=3, raw=b"abc", peer="", timeout=2.0),
    pp.OutAnswer(id=3, error=3002, reason="no route"),
    pp.Goodbye(reason="bye", drain=True),
    pp.Reset(reason="who are you"),
    pp.StatusQuery(),
    pp.StatusReply(json=b"{}"),
]


def test_batch_round_trip_keeps_order_and_types() -> None:
    frame = pp.encode(SAMPLES)
    assert frame[0] == pp.PROTOCOL_VERSION
    assert pp.decode(frame) == SAMPLES
    assert pp.decode(memoryview(frame)) == SAMPLES


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_each_message_alone(msg: pp.PoolMessage) -> None:
    assert pp.decode(pp.encode_one(msg)) == [msg]


def test_other_protocol_version_is_refused() -> None:
    frame = bytearray(pp.encode_one(pp.Credit(1)))
    frame[0] = pp.PROTOCOL_VERSION + 1
    with pytest.raises(pp.ProtocolError, match="version"):
        pp.decode(bytes(frame))


def test_unknown_tag_and_wrong_field_types_are_protocol_errors() -> None:
    import msgspec

    with pytest.raises(pp.ProtocolError):
        pp.decode(bytes([pp.PROTOCOL_VERSION]) + msgspec.msgpack.encode([[99, 1]]))
    with pytest.raises(pp.ProtocolError):
        pp.decode(bytes([pp.PROTOCOL_VERSION]) + msgspec.msgpack.encode([[2, "three"]]))
    with pytest.raises(pp.ProtocolError):
        pp.decode(b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    for frame in (data, bytes([pp.PROTOCOL_VERSION]) + data):
        try:
            out = pp.decode(frame)
        except pp.ProtocolError:
            continue
        assert isinstance(out, list)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.binary(max_size=300), st.text(max_size=40), st.booleans())
def test_request_fields_survive(hbh: int, raw: bytes, peer: str, retransmit: bool) -> None:
    r = pp.Request(
        id=hbh, peer=peer, hbh=hbh, app=4, cmd=272, deadline=0.0, raw=raw, retransmit=retransmit
    )
    assert pp.decode(pp.encode([r, r])) == [r, r]
