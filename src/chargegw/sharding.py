"""Charging state partitioned by account: the shard function and the two signals a worker
sends back when a request is not its to apply.

The store is split into a fixed number of shards (`store.shards`, many more than workers).
An account lives in the shard of its primary Subscription-Id-Data (the first subscription it
was imported or provisioned with); its other subscriptions are aliases that name that shard.
The gateway assigns every shard to exactly one live worker (rendezvous hashing on the
worker id, so a worker that comes back gets its shards back) and routes each Gy/Sy request
to the owner of its shard:
- a request carrying a Subscription-Id goes to `shard_of(first Subscription-Id-Data)`;
- a CCR-U/T (or Sy STR) goes to the shard the front end remembered for its Session-Id;
- with neither, `shard_of(Session-Id)`.

A worker answers `ShardMoved` instead of applying a request whose account or session lives in
another shard (an alias, a Session-Id the gateway forgot), and `NotOwner` when it does not own
the shard (it was moved away, or a newer owner fenced it off). The gateway then places the
request again, on the owner of `ShardMoved.shard`; a request is placed a bounded number of
times. Nothing was applied in either case, so a re-placed request is charged once.

The one function here is shared by the gateway, the workers, the stores and the operator's
CLIs: all of them must agree on it byte for byte, so it is CRC-32 (zlib), stable across
processes, hosts and Python versions.
"""

from __future__ import annotations

import zlib

DEFAULT_SHARDS = 64
MAX_SHARDS = 4096


def shard_of(key: bytes | str, shards: int) -> int:
    """The shard of a routing key (Subscription-Id-Data, or a Session-Id), 0 <= s < shards."""
    if isinstance(key, str):
        key = key.encode()
    return zlib.crc32(key) % shards


def owner_name(worker_id: str) -> str:
    """The stable name behind a worker id: `chargegw run` names a slot's successive worker
    processes `<name>.<incarnation>`, so a restarted worker keeps its name, its shards (the
    gateway's rendezvous hash) and its store owner file."""
    base, dot, n = worker_id.rpartition(".")
    return base if dot and base and n.isdigit() else worker_id


class ShardMoved(Exception):
    """The request's account or session lives in shard `shard`: place it there, unapplied."""

    def __init__(self, shard: int, reason: str = "") -> None:
        super().__init__(reason or f"lives in shard {shard}")
        self.shard = shard


class NotOwner(ShardMoved):
    """This worker does not own `shard` (any more): the gateway's owner of it must apply it.
    Raised unapplied, also when a newer owner has fenced this one off in the store."""
