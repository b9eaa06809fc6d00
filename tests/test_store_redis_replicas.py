"""Redis with replicas (issue 10): Sentinel URLs, and `replicas` = WAIT before a batch counts,
so an answered change survives a failover to a replica."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, ServiceReq
from chargegw.workers.charging.store import (
    AccountRow,
    Cdr,
    StoreConfig,
    StoreUnavailable,
    ledger_check,
)
from chargegw.workers.charging.stores.redis_db import parse_sentinel_url

sys.path.insert(0, str(Path(__file__).parent / "reliability"))
from redis_ha import redis_ha  # noqa: E402

NOW = 1_750_000_000.0


def op(sid: str, number: int, rtype: int, used: int = 0, requested: int = 0) -> CCOp:
    return CCOp(sid, number, rtype, [ServiceReq("1:", 100, 10, used, requested)],
                [(0, "4670000001")], -1, "c.test", "test", NOW, 100.0, 50.0)  # fmt: skip


def test_sentinel_urls_are_parsed_and_bad_ones_named() -> None:
    assert parse_sentinel_url("redis+sentinel://10.0.0.1:26379,[::1]:26380/cg/2") == (
        [("10.0.0.1", 26379), ("::1", 26380)], "cg", 2, None)  # fmt: skip
    assert parse_sentinel_url("redis+sentinel://:pw@h:1/m")[3] == "pw"
    for bad in ("redis+sentinel://h:1", "redis+sentinel://h/m", "redis+sentinel://h:x/m",
                "redis+sentinel://h:1/m/x", "redis+sentinel://h:70000/m"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)
    with pytest.raises(ValueError, match="Sentinel"):
        StoreConfig(backend="redis", url="redis+sentinel://h/m")
    with pytest.raises(ValueError, match="redis backend only"):
        StoreConfig(backend="sqlite", replicas=1)
    with pytest.raises(ValueError, match="shorter than timeout"):
        StoreConfig(backend="redis", replicas=1, replica_wait=0.5, timeout=0.5)
    assert StoreConfig(backend="redis", url="redis+sentinel://h:1/m", replicas=1).replicas == 1


needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="redis-server not installed (apt-get install -y redis-server)",
)


@needs_redis
@pytest.mark.timeout(120)
def test_writes_count_only_once_the_replica_holds_them_and_survive_a_failover(
    tmp_path: Path,
) -> None:
    pytest.importorskip("redis")
    from chargegw.workers.charging.redis_store import RedisCdrStore, RedisStore

    with redis_ha(tmp_path) as ha:
        store = RedisStore(ha.url, timeout=1.0, shards=8, replicas=1, replica_wait=0.2)
        cdrs = RedisCdrStore(ha.url, timeout=1.0, replicas=1, replica_wait=0.2)
        try:
            store.import_accounts([AccountRow("4670000001", 10_000, 0, False,
                                              [(0, "4670000001")])], NOW)  # fmt: skip
            out = store.credit_control_many([op("s1", 0, core.INITIAL, requested=100)])
            assert out[0].result == 2001, out
            assert cdrs.put_cdrs([Cdr("s1", 0, 2, NOW, "c.test", "test")]) == [True]
            # The replica stops acknowledging: WAIT finds 0 of 1, no 2001 for the batch.
            ha.procs["replica0"].send_signal(signal.SIGSTOP)
            out = store.credit_control_many([op("s1", 1, core.UPDATE, used=10, requested=100)])
            assert isinstance(out[0], StoreUnavailable), out
            with pytest.raises(StoreUnavailable):
                cdrs.put_cdrs([Cdr("s1", 1, 3, NOW, "c.test", "test")])
            ha.procs["replica0"].send_signal(signal.SIGCONT)
            # The primary applied the refused CDR: its resend is found there, stored once.
            assert cdrs.put_cdrs([Cdr("s1", 1, 3, NOW, "c.test", "test")]) == [False]
            # The resend (same CC-Request-Number) is answered once, charged once.
            out = store.credit_control_many([op("s1", 1, core.UPDATE, used=10, requested=100)])
            assert out[0].result == 2001, out
            balance = store.get_account("4670000001").account.balance
            ha.kill_primary()
            # After the failover the client follows the Sentinel to the promoted replica and
            # finds every answered change there.
            seen: list[object] = []
            for _ in range(200):
                try:
                    acct = store.get_account("4670000001")
                    break
                except StoreUnavailable as exc:
                    seen.append(exc)
                    time.sleep(0.1)
            else:
                raise AssertionError(f"no failover: {seen[-1:]}")
            assert ha.master_port() == ha.replica
            assert acct.account.balance == balance
            assert ledger_check(store).ok
            assert sorted(c.record_number for c in cdrs.iter_cdrs()) == [0, 1]
        finally:
            store.close()
            cdrs.close()


@needs_redis
@pytest.mark.timeout(120)
def test_a_sy_subscription_counts_only_once_the_replica_holds_it(tmp_path: Path) -> None:
    """SLR/STR change whom a spend is reported to: with `replicas`, those writes wait for
    the replica as the charging writes do (a failover must not forget a subscription)."""
    pytest.importorskip("redis")
    from chargegw.workers.charging.redis_store import RedisStore
    from chargegw.workers.charging.store import SyCounter, SySubscription

    with redis_ha(tmp_path) as ha:
        store = RedisStore(ha.url, timeout=1.0, shards=8, replicas=1, replica_wait=0.2)
        try:
            store.import_accounts([AccountRow("4670000001", 10_000, 0, False,
                                              [(0, "4670000001")])], NOW)  # fmt: skip
            store.sy_put(SySubscription("sy1", "4670000001", "pcrf.test", "test", []))
            # an intermediate SLR: the same session and account, other counters (no change
            # of the account's count, so no account write whose WAIT would cover it)
            counters = [SyCounter("c1", "normal", [(1_000, "near")])]
            again = SySubscription("sy1", "4670000001", "pcrf.test", "test", counters)
            ha.procs["replica0"].send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(StoreUnavailable):
                    store.sy_put(again)
                with pytest.raises(StoreUnavailable):
                    store.sy_put(SySubscription("sy2", "4670000001", "pcrf.test", "test", []))
                with pytest.raises(StoreUnavailable):
                    store.sy_delete("sy1")
            finally:
                ha.procs["replica0"].send_signal(signal.SIGCONT)
            # what the primary applied before the refusal is there; the retries complete
            store.sy_put(again)
            assert store.sy_get("sy1") == again
            store.sy_put(SySubscription("sy2", "4670000001", "pcrf.test", "test", []))
            assert store.sy_get("sy2") is not None
            store.sy_delete("sy1")
            assert store.sy_get("sy1") is None
            assert sorted(s.session_id for s in store.sy_for_account("4670000001")) == ["sy2"]
        finally:
            store.close()
