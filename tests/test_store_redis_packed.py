"""The Redis CAS script's arguments (issue 10): the script reads exactly what Python sent
(any bytes, empty strings, big values), a call through `Script` writes what it says, it
fences on the shard's gen, and a damaged argument list is refused with nothing written
(the script checks the whole list before it applies anything)."""

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
)
from chargegw.workers.charging.testing import RedisServer

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


# (ARGV after gen and count) -- each starts with a good write, so "nothing written" means
# the damage was found before the first write
DAMAGED: list[list[bytes | str]] = [
    ["set", "2", b"v", "set", "2"],  # an operation cut short
    ["set", "2", b"v", "setpx", "2", b"w"],  # setpx without its PX
    ["set", "2", b"v", "explode", "2", b"w"],  # unknown operation
    ["set", "2", b"v", "set", "9", b"w"],  # key index past KEYS
    ["set", "2", b"v", "set", "x", b"w"],  # key index not a number
    ["set", "2", b"v", b"extra"],  # a leftover argument
]


@needs_redis
@pytest.mark.parametrize("ops", DAMAGED)
def test_script_refuses_a_damaged_argument_list(r, ops: list[bytes | str]) -> None:
    redis = pytest.importorskip("redis")
    with pytest.raises(redis.ResponseError):
        r.evalsha(CAS_SHA, 2, "pk:gen", "pk:dmg", b"", b"0", *ops)
    assert r.get("pk:dmg") is None


@needs_redis
@pytest.mark.parametrize("head", [[], [b""], [b"", b"x"], [b"", b"-1"], [b"", b"3", b""]])
def test_script_refuses_a_bad_count(r, head: list[bytes]) -> None:
    redis = pytest.importorskip("redis")
    with pytest.raises(redis.ResponseError):
        r.evalsha(CAS_SHA, 2, "pk:gen", "pk:dmg", *head)
    assert r.get("pk:dmg") is None
