"""Test accounts that cover the charging shards (a helper module for the store tests, not a
test file): the sharded SQLite store's tests and the Redis Cluster ones each needed "one
account per shard", and wrote it twice."""

from __future__ import annotations

from chargegw.sharding import shard_of


def one_per_shard(shards: int, count: int | None = None, *, prefix: str, width: int) -> list[str]:
    """The first of the numbers `prefix` + i (i = 0, 1, ... in `width` digits) on each shard,
    until `count` distinct shards of `shards` are found (every shard by default), in shard
    order. The same arguments always give the same numbers."""
    want = shards if count is None else count
    if not 0 <= want <= shards:
        raise ValueError(f"{want} distinct shards asked of {shards}")
    found: dict[int, str] = {}
    i = 0
    while len(found) < want:
        x = f"{prefix}{i:0{width}d}"
        found.setdefault(shard_of(x, shards), x)
        i += 1
    return [found[k] for k in sorted(found)]
