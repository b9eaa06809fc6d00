"""The gateway <-> worker wire protocol over ZeroMQ ROUTER/DEALER.

A ZeroMQ message is one frame (after the ROUTER's identity frame): a version byte, then a
msgpack array of tagged, array-like msgspec Structs. Batching is the normal case: the
gateway sends every request it placed on a worker during one event-loop turn in one frame,
and a worker answers a drained batch in one frame, so the per-message cost of ZeroMQ and
of the system calls under it is paid once per batch.

The Diameter message itself travels as raw bytes (`Request.raw`, `Answer.raw`): the gateway
parses only the header and routing AVPs, the worker decodes fully. The small typed
envelope around it is encoded once, at the gateway.

Credit: a worker grants `Ready.credit` slots to each gateway; every Request takes one, and
every Answer, `Expired` (or `Credit`) gives one back. A worker that hears `Reset` (the
gateway does not know it: it was dropped, or the gateway restarted) registers again with a
new `Ready`, and answers of requests taken before that are replaced by `Credit` messages, so
the two sides never disagree about the window.

A registration starts when the gateway's Heartbeat carrying its `gen` arrives (the
gateway sends one in answer to every Ready). Requests that reach the worker before that
belong to the previous registration, which the gateway has already failed over: the worker
drops them unapplied. Worker heartbeats carry `gen` and `received` (requests of this
registration), so the gateway checks `free` exactly: worker free == gateway available +
(requests sent - requests received). No message is ever dropped for a full pipe.
"""

from __future__ import annotations

import msgspec

# 2: CURVE pool, Expired, heartbeat reconciliation; 3: shards; 4: Stats, LogLevel, Ready.store
PROTOCOL_VERSION = 4
_VERSION_BYTE = bytes([PROTOCOL_VERSION])


class _Msg(msgspec.Struct, array_like=True, tag_field="type"):
    pass


class Ready(_Msg, tag=1):
    """worker -> gateway: (re)register and grant `credit` slots."""

    worker_id: str
    credit: int
    apps: list[int]
    gen: int = 0  # registration number; a repeated Ready of the same gen only refreshes
    pid: int = 0
    host: str = ""
    version: int = PROTOCOL_VERSION
    # The charging store's shard count (chargegw/sharding.py) and the applications whose
    # requests are routed by shard; 0 and [] for a worker whose applications are not sharded.
    shards: int = 0
    shard_apps: list[int] = msgspec.field(default_factory=list)
    # Whether its store answered the worker's set-up (STORE_OK / STORE_DOWN / STORE_NONE):
    # readiness counts a worker from its registration, before its first Stats.
    store: int = -1


class Credit(_Msg, tag=2):
    """worker -> gateway: `n` more slots (answers of a past registration, or a larger window)."""

    n: int


class Request(_Msg, tag=3):
    """gateway -> worker: one Diameter request to handle."""

    id: int  # gateway-local request id (hop-by-hop ids of different peers may collide)
    peer: str  # Origin-Host of the peer connection it came on
    hbh: int
    app: int
    cmd: int
    deadline: float  # time.time() after which the gateway answers it itself
    raw: bytes  # the request exactly as received
    retransmit: bool = False  # resent after the worker holding it was lost
    shard: int = -1  # the charging shard it was routed by (-1: not a sharded application)


class Answer(_Msg, tag=4):
    """worker -> gateway: the encoded answer to request `id` (returns its slot)."""

    id: int
    raw: bytes


DRAIN_ACK = -2


class Heartbeat(_Msg, tag=5):
    """Both ways, every heartbeat interval; `free` is the sender's free slots (worker side).
    From the gateway, `free == DRAIN_ACK` acknowledges a worker's draining Goodbye."""

    t: float
    free: int = -1
    gen: int = -1  # the registration it refers to (-1: none)
    received: int = -1  # worker side: requests received in registration `gen`


class OutRequest(_Msg, tag=6):
    """worker -> gateway: send `raw` to `peer` (or by realm routing when empty)."""

    id: int  # worker-local id
    raw: bytes
    peer: str = ""
    timeout: float = 5.0


class OutAnswer(_Msg, tag=7):
    """gateway -> worker: the answer to an OutRequest, or `error` (a Result-Code) and why."""

    id: int
    raw: bytes = b""
    error: int = 0
    reason: str = ""


class Goodbye(_Msg, tag=8):
    """Either way: the sender is going away. From a worker with `drain`, it takes no new
    requests but answers those it holds; without, the gateway fails them over at once."""

    reason: str = ""
    drain: bool = False


class Reset(_Msg, tag=9):
    """gateway -> worker: unknown to this gateway; register again with Ready."""

    reason: str = ""


class StatusQuery(_Msg, tag=10):
    """`chargegw status` -> gateway, on the operator's status socket only."""

    pass


class StatusReply(_Msg, tag=11):
    """gateway -> `chargegw status`: the status document as JSON."""

    json: bytes


class Expired(_Msg, tag=12):
    """worker -> gateway: request `id` reached its deadline before it was applied; it was
    dropped unapplied (the gateway answers, or has answered, 3002). Returns its slot."""

    id: int


class Assign(_Msg, tag=13):
    """gateway -> worker: the complete set of shards this worker owns for this gateway, sent
    after registration and whenever membership changes (before any request routed by it).
    The worker claims new ones in its store (fencing off any previous owner) and releases
    those no longer listed."""

    shards: list[int]
    epoch: int = 0  # the gateway's assignment number (grows with each change)


class Moved(_Msg, tag=14):
    """worker -> gateway: request `id` was not applied here; place it on the owner of
    `shard` (returns its slot): the account or session lives there, or (`shard` being the
    request's own) this worker does not own it any more."""

    id: int
    shard: int
    reason: str = ""


# Stats ------------------------------------------------------------------------------------
# Upper bounds (seconds) of the histograms a worker reports; both sides use these, and the
# gateway refuses a Stats whose counts do not have len(bounds) + 1 entries (the last: beyond).
WORKER_TIME_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
)  # fmt: skip
STORE_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
STORE_NONE, STORE_DOWN, STORE_OK = -1, 0, 1
NOT_SENT = -1  # a Stats count an older worker does not report
RG_OTHER = -1  # the rating group of the units folded together beyond a worker's bound
MAX_STATS_APPS = 64  # applications in one Stats
MAX_STATS_RGS = 65  # rating groups in one Stats (64 and RG_OTHER)


class AppTime(msgspec.Struct, array_like=True):
    """Time in the worker for one application: per-bucket counts (not cumulative across
    buckets) over WORKER_TIME_BUCKETS and their sum, since the worker started."""

    app: int
    counts: list[int]
    sum: float


class Units(msgspec.Struct, array_like=True):
    """The OCS's figures for one rating group since the worker started: units granted and
    reported used, and micro-units debited and refunded."""

    rg: int
    granted: int = 0
    used: int = 0
    debited: int = 0
    refunded: int = 0


class Stats(_Msg, tag=15):
    """worker -> gateway, about once a heartbeat interval: cumulative figures since the
    worker process started (`boot` names that start), so that a lost or repeated message
    changes nothing and the gateway can sum them over workers without a scrape per worker."""

    boot: int
    apps: list[AppTime] = msgspec.field(default_factory=list)
    store_counts: list[int] = msgspec.field(default_factory=list)  # over STORE_BUCKETS
    store_sum: float = 0.0
    store_errors: int = 0
    units: list[Units] = msgspec.field(default_factory=list)
    shards: int = 0  # shards this worker owns now (the union over its gateways)
    store: int = STORE_NONE  # whether the store answered its last operation
    # Appended after version 4 shipped, so the version stays: a gateway that does not know
    # them ignores trailing fields, and a worker that does not send them leaves NOT_SENT.
    # Requests it finished (answered, moved or dropped past their deadline), its error
    # answers for a failure of its own (a handler's exception, its store down), and how many
    # of those were 3004; for `chargegw status`, per worker.
    handled: int = NOT_SENT
    errors: int = NOT_SENT
    busy: int = NOT_SENT


class LogLevel(_Msg, tag=16):
    """gateway -> worker: apply this log level now (the gateway's SIGHUP changed it)."""

    level: str


PoolMessage = (
    Ready
    | Credit
    | Request
    | Answer
    | Heartbeat
    | OutRequest
    | OutAnswer
    | Goodbye
    | Reset
    | StatusQuery
    | StatusReply
    | Expired
    | Assign
    | Moved
    | Stats
    | LogLevel
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[PoolMessage])


class ProtocolError(Exception):
    """A frame that is not a valid message of this protocol version."""


def encode(messages: list[PoolMessage]) -> bytes:
    """One frame carrying `messages` (a batch)."""
    buf = bytearray(_VERSION_BYTE)
    _encoder.encode_into(messages, buf, 1)
    return bytes(buf)


def encode_one(message: PoolMessage) -> bytes:
    return encode([message])


def decode(frame: bytes | memoryview) -> list[PoolMessage]:
    """The messages of a frame; ProtocolError for anything else (never another exception)."""
    if len(frame) < 2:
        raise ProtocolError("empty frame")
    if frame[0] != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {frame[0]}, expected {PROTOCOL_VERSION}")
    try:
        return _decoder.decode(memoryview(frame)[1:])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(str(exc)) from None
