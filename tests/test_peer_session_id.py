"""RFC 6733 8.8 Session-Ids: the format, the 64-bit counter behind the two halves, threads,
and uniqueness across restarts (a fresh interpreter, twice, within one second)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import pytest

from chargegw.peer import SessionIdGenerator
from chargegw.peer.session_id import SessionIdCounter, split_session_id

FORMAT = re.compile(r"(?P<id>[^;]+);(?P<high>\d+);(?P<low>\d+)(?:;(?P<opt>.*))?\Z")


def value(sid: str) -> int:
    _, high, low, _ = split_session_id(sid)
    return (high << 32) | low


def test_format_is_identity_high_low_and_the_optional_part() -> None:
    gen = SessionIdGenerator("client.example.com")
    a, b = gen.next(), gen.next("imsi-001;x")
    ma, mb = FORMAT.match(a), FORMAT.match(b)
    assert ma and mb, (a, b)
    assert ma["id"] == mb["id"] == "client.example.com"
    assert ma["opt"] is None and mb["opt"] == "imsi-001;x"
    for m in (ma, mb):
        assert 0 <= int(m["high"]) <= 0xFFFFFFFF and 0 <= int(m["low"]) <= 0xFFFFFFFF
    assert value(b) == value(a) + 1
    assert gen() != b  # callable, like python-diameter's next_id()


def test_high_half_is_the_boot_time_and_low_half_counts() -> None:
    gen = SessionIdGenerator("gw.example", SessionIdCounter(clock=lambda: 1_700_000_000.5))
    ids = [gen.next() for _ in range(3)]
    assert ids == [
        f"gw.example;1700000000;{(1 << 31) + 1}",
        f"gw.example;1700000000;{(1 << 31) + 2}",
        f"gw.example;1700000000;{(1 << 31) + 3}",
    ]


def test_low_half_carries_into_the_high_half() -> None:
    start = 1_000 + (0xFFFFFFFD / (1 << 32))  # a boot just before the next second
    gen = SessionIdGenerator("gw.example", SessionIdCounter(clock=lambda: start))
    halves = [split_session_id(gen.next())[1:3] for _ in range(5)]
    assert halves[0][0] == 1000 and halves[-1][0] == 1001
    assert (1001, 0) in halves
    values = [(h << 32) | lo for h, lo in halves]
    assert values == sorted(values) and len(set(values)) == 5


def test_a_restart_in_the_same_second_starts_above_the_old_run() -> None:
    # The old run booted at .2 s and issued a million ids; the new one boots at .7 s.
    old = SessionIdGenerator("gw.example", SessionIdCounter(clock=lambda: 5_000.2))
    for _ in range(1_000_000 - 1):
        old.counter.next()
    last_old = value(old.next())
    new = SessionIdGenerator("gw.example", SessionIdCounter(clock=lambda: 5_000.7))
    assert value(new.next()) > last_old


def test_unique_across_fresh_processes() -> None:
    code = (
        "from chargegw.peer import SessionIdGenerator\n"
        "g = SessionIdGenerator('gw.example')\n"
        "print('\\n'.join(g.next() for _ in range(2000)))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        for _ in range(2)
    ]
    assert len(runs[0]) == len(runs[1]) == 2000
    assert not set(runs[0]) & set(runs[1])
    assert min(value(s) for s in runs[1]) > max(value(s) for s in runs[0])


def test_threads_never_get_the_same_id() -> None:
    gen = SessionIdGenerator("gw.example")
    other = SessionIdGenerator("gw.example")  # a second generator shares the counter
    out: list[list[str]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        g = gen if i % 2 else other
        out[i].extend(g.next() for _ in range(5_000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [s for chunk in out for s in chunk]
    assert len(every) == 40_000 and len(set(every)) == 40_000
    for chunk in out:  # each thread sees its ids increase
        values = [value(s) for s in chunk]
        assert values == sorted(values)


@pytest.mark.parametrize("identity", ["", "a;b", "a b", "gw\n"])
def test_identity_must_be_a_diameter_identity(identity: str) -> None:
    with pytest.raises(ValueError, match="not a DiameterIdentity"):
        SessionIdGenerator(identity)


@pytest.mark.parametrize(
    "sid", ["gw", "gw;1", ";1;2", "gw;a;2", "gw;1;-2", "gw;4294967296;0", "gw; 1;2"]
)
def test_split_refuses_what_is_not_the_format(sid: str) -> None:
    with pytest.raises(ValueError):
        split_session_id(sid)


def test_split_reads_the_parts() -> None:
    assert split_session_id("gw.example;7;9;imsi;1") == ("gw.example", 7, 9, "imsi;1")
    assert split_session_id("gw.example;0;4294967295") == ("gw.example", 0, 0xFFFFFFFF, None)
