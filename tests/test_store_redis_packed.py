"""The Redis CAS script's one packed argument (issue 10: one bulk string per script call
instead of some 25): the format round-trips, the script reads exactly what Python packed
(any bytes, empty strings, big values), a call through `Script` writes what it says, and a
truncated or padded argument is refused with nothing written."""

from __future__ import annotations

import shutil

import pytest

from chargegw.workers.charging.stores.redis_db import (
    APPLIED,
    CAS,
    CAS_SHA,
    CONFLICT,
    FENCED,
    Script,
    pack_args,
    unpack_args,
)
from chargegw.workers.charging.testing import RedisServer

ITEMS: list[list[bytes | str]] = [
    [],
    [b""],
    ["", b"0"],
    [b"\x00\xff\x00", "set", "2", b"x" * 70_000, b"", "\u20ac"],
    [bytes(range(256))] * 40,
]


@pytest.mark.parametrize("items", ITEMS)
def test_pack_round_trips(items: list[bytes | str]) -> None:
    want = [x if isinstance(x, bytes) else x.encode() for x in items]
    assert unpack_args(pack_args(items)) == want


def test_unpack_refuses_wrong_lengths() -> None:
    packed = pack_args([b"abc", b"de"])
    with pytest.raises(ValueError):
        unpack_args(packed[:-1])
    with pytest.raises(ValueError):
        unpack_args(packed + b"!")


needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server binary not installed"
)


@pytest.fixture(scope="module")
def r():
    redis = pytest.importorskip("redis")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    with RedisServer() as s:
        c = redis.Redis.from_url(s.url)
        c.script_load(CAS)
        yield c
        c.close()


@needs_redis
def test_script_reads_what_python_packed(r) -> None:
    odd = bytes(range(256)) * 300  # 76,800 bytes, every byte value
    sc = Script(3, "pk:gen", None)
    sc.compare("pk:a", None)
    sc.set("pk:a", odd)
    sc.set("pk:b", b"", 60_000)
    sc.cmd("rpush", "pk:l", b"\x00one")
    sc.cmd("rpush", "pk:l", b"")
    sc.cmd("zadd", "pk:z", "1.5", "m\n1")
    pipe = r.pipeline(transaction=False)
    sc.queue(pipe)
    assert pipe.execute() == [[APPLIED]]
    assert r.get("pk:a") == odd
    assert r.get("pk:b") == b"" and 0 < r.pttl("pk:b") <= 60_000
    assert r.lrange("pk:l", 0, -1) == [b"\x00one", b""]
    assert r.zscore("pk:z", "m\n1") == 1.5
    # the same call again: pk:a is no longer absent, so nothing is written
    again = Script(3, "pk:gen", None)
    again.compare("pk:a", None)
    again.set("pk:a", b"other")
    pipe = r.pipeline(transaction=False)
    again.queue(pipe)
    res = pipe.execute()[0]
    assert res[0] == CONFLICT and res[1] == odd
    assert r.get("pk:a") == odd


@needs_redis
def test_script_fences_on_gen(r) -> None:
    r.set("pk:g2", "7")
    sc = Script(4, "pk:g2", 6)
    sc.compare("pk:f", None)
    sc.set("pk:f", b"v")
    pipe = r.pipeline(transaction=False)
    sc.queue(pipe)
    assert pipe.execute() == [[FENCED]]
    assert r.get("pk:f") is None


@needs_redis
@pytest.mark.parametrize("cut", [1, 3, -1])
def test_script_refuses_a_damaged_argument(r, cut: int) -> None:
    packed = pack_args([b"", b"0", "set", "2", b"value"])
    bad = packed[:-cut] if cut > 0 else packed + b"extra"
    redis = pytest.importorskip("redis")
    with pytest.raises(redis.ResponseError):
        r.evalsha(CAS_SHA, 2, "pk:gen", "pk:dmg", bad)
    assert r.get("pk:dmg") is None
    with pytest.raises(redis.ResponseError):
        r.evalsha(CAS_SHA, 2, "pk:gen", "pk:dmg", b"\x00\x00")
    assert r.get("pk:dmg") is None
