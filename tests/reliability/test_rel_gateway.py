"""Faults injected into `chargegw run` as users run it (loopback, a fresh data dir, the bundled
load generator), each bounded in time. The scenarios live in `chargegw.loadtest.reliability`
so that `chargegw bench reliability` runs the same code; each test asserts on the figures the
scenario measured (answers, losses, the ledger read back, RSS sampled from /proc)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chargegw.loadtest import reliability as rel
from chargegw.loadtest import reliability_fuzz as relfuzz

pytestmark = pytest.mark.timeout(120)


def _show(r: rel.Result) -> str:
    return f"{r.failures}\n{r.details}"


def test_worker_sigkilled_every_few_seconds_loses_nothing_and_charges_once(
    tmp_path: Path,
) -> None:
    r = rel.worker_crash(tmp_path, duration=10.0, every=2.5)
    assert r.faults >= 3, _show(r)
    assert r.offered > 500 and r.answered == r.offered, _show(r)
    assert r.lost == 0, _show(r)
    assert r.ledger_ok is True and r.ledger_diff_micro == 0, _show(r)
    assert r.double_charges == 0, _show(r)
    assert r.passed, _show(r)


def test_retransmissions_get_the_original_answer_and_no_second_charge(tmp_path: Path) -> None:
    r = rel.retransmissions(tmp_path)
    assert r.faults == 9  # three duplicates of each of CCR-I, CCR-U and CCR-T
    assert r.double_charges == 0 and r.ledger_diff_micro == 0 and r.ledger_ok, _show(r)
    assert r.passed, _show(r)


def test_slow_reader_keeps_gateway_memory_bounded_and_others_unaffected(tmp_path: Path) -> None:
    r = rel.slow_reader(tmp_path, seconds=6.0, rss_limit_mb=64.0)
    assert r.details["slow_peer_sent"] > 1000, _show(r)  # it really flooded
    assert r.answered == r.offered > 0 and r.lost == 0, _show(r)
    assert r.passed, _show(r)


def test_connection_flood_bounded_memory_and_good_peer_keeps_latency(tmp_path: Path) -> None:
    r = rel.connection_flood(tmp_path, connections=1000, hold=3.0, rss_limit_mb=64.0)
    assert r.details["connections"] >= 500 or r.details["connections"] == r.faults, _show(r)
    assert r.answered == r.offered > 0 and r.lost == 0, _show(r)
    assert r.passed, _show(r)


def test_overload_excess_gets_3004_quickly_and_accepted_p99_stays_bounded(
    tmp_path: Path,
) -> None:
    # The gateway and its worker run on half the CPUs and the generator on the other half
    # (rel.split_cpus). On a machine of two cores that is one core for the gateway and its
    # worker, which 2x the measured capacity saturates by itself: requests then wait in the
    # socket and the loop, so the bound there is what fair reads give (measured p99 ~230 ms),
    # not the 1 ms the gateway meets with a core of its own. The accepted rate must stay at
    # 15% of the capacity or more: shedding must not starve the work it protects. Quiet
    # machine, pinned: 29-115% (lower when the measured capacity, so the offered rate, is
    # higher: the gateway's shedding then takes most of the core it shares with its worker);
    # sharing both cores with the generator: 21-57%; a per-worker queue-delay limit tried
    # once: 4-8%.
    # The bounds apply to the generator's own answers as well as the prober's (quiet,
    # pinned: the generator's 3004 p99 170-330 ms, its 2001 p99 240-370 ms; under other
    # sessions' CPU burners 540-760 ms).
    wide = (os.cpu_count() or 1) > 2
    r = rel.overload(tmp_path, seconds=5.0, factor=2.0, busy_p99_ms=50.0 if wide else 1000.0,
                     ok_p99_ms=500.0 if wide else 1000.0, min_goodput=0.15)
    assert r.faults > 0, _show(r)
    assert r.passed, _show(r)


def test_overload_from_two_flooding_peers_spares_a_third(tmp_path: Path) -> None:
    # The generator as two processes, two peers, beside the prober, a third peer that sends
    # 50 price enquiries a second. Each flood may hold its share of a nearly full worker
    # (the limit over the three peers) and less than half of what is left: before that
    # rule the two floods shared the whole worker and 41% of the prober's requests got 3004
    # (2026-12-04, 2 cores); with it 0 of 180, twice. A device run gets the same layout
    # by itself (generator_processes) when the offered rate needs several generators.
    r = rel.overload(tmp_path, seconds=5.0, factor=2.0, busy_p99_ms=1000.0, ok_p99_ms=1000.0,
                     min_goodput=0.15, processes=2)
    assert r.details["generator_processes"] == 2 and r.faults > 0, _show(r)
    probe = r.details["probe"]
    shed = probe.get("3004", {}).get("n", 0)
    sent = sum(v["n"] for v in probe.values())
    assert sent > 100 and shed <= 0.05 * sent, _show(r)
    assert r.passed, _show(r)


def test_overload_with_a_doic_reacting_node_abates_the_excess_at_its_source(
    tmp_path: Path,
) -> None:
    # The same 2x overload, the generator acting as a DOIC reacting node: the gateway's
    # reports (compounding what was shed with the reduction in force) must take at least
    # half of the excess off the wire before it is sent. Same latency bounds as above: the
    # first second, before any report, is an overload like the plain one.
    wide = (os.cpu_count() or 1) > 2
    r = rel.overload(tmp_path, seconds=8.0, factor=2.0, busy_p99_ms=50.0 if wide else 1000.0,
                     ok_p99_ms=500.0 if wide else 1000.0, min_goodput=0.15, doic=True)
    assert r.details["abated"] > 0, _show(r)
    assert r.passed, _show(r)


def test_overload_with_a_latency_objective_keeps_accepted_requests_quick(
    tmp_path: Path,
) -> None:
    # The same 2x overload against a gateway with pool.latency_target_ms = 3: each worker
    # holds only what it answers in about 3 ms, and the rest get 3004 at once, so accepted
    # requests no longer wait behind the credit's 128 slots. Judged at the prober, the
    # well-behaved peer beside the flood whose latency the objective protects. On the
    # 2-core machine (gateway, worker and prober on one core; 2026-12-03, 12 runs) its
    # accepted p50 was 4-7 ms, p99 11-25 ms; without the objective p50 13-86 ms, p99
    # 33-153 ms. The p50 bound separates the two; the p99 bound catches a long tail.
    # The generator's own figures (2001 p99 13-79 ms, 3004 p99 5-63 ms in the same runs)
    # include its loop, which 2x saturates: they get the wide bounds of the plain test.
    # Goodput 20-77%: the one core also carries the gateway's 3004s, and a worker held to
    # small batches answers fewer per CPU second.
    r = rel.overload(tmp_path, seconds=6.0, factor=2.0, busy_p99_ms=1000.0, ok_p99_ms=1000.0,
                     min_goodput=0.1, latency_target_ms=3.0)
    assert r.faults > 0, _show(r)
    assert r.details["latency_target_ms"] == 3.0
    assert r.passed, _show(r)
    probe = r.details["probe"]["2001"]
    assert probe["p50_ms"] <= 10.0 and probe["p99_ms"] <= 35.0, _show(r)


def test_live_socket_fuzz_beside_a_good_peer(tmp_path: Path) -> None:
    r = relfuzz.live_fuzz(tmp_path, count=3000, seed=14, conns=6, seconds=15.0)
    fz = r.details["fuzz"]
    assert fz["sent"] >= 1000 and fz["sent_request"] >= 300, _show(r)
    assert fz.get("request_unanswered", 0) == 0, _show(r)
    assert r.answered == r.offered > 0, _show(r)  # the good peer: every request answered
    assert r.double_charges == 0 and r.ledger_ok, _show(r)
    assert r.passed, _show(r)


def test_codec_mutation_fuzz_fixed_seed(tmp_path: Path) -> None:
    r = relfuzz.codec_fuzz(tmp_path, count=20000, seed=14)
    assert r.offered == 20000, _show(r)
    assert r.answered == r.offered, _show(r)
    assert r.passed, _show(r)


def test_the_report_is_written_with_result_codes_as_keys(tmp_path: Path) -> None:
    import orjson

    r = rel.Result("overload", faults=3)
    r.details = {"result_codes": {2001: 5, 3004: 3}}
    rel.write_report(tmp_path / "r.json", [r])
    doc = orjson.loads((tmp_path / "r.json").read_bytes())
    assert doc["results"][0]["details"]["result_codes"] == {"2001": 5, "3004": 3}
