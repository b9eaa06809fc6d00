"""Round trips of the Redis store's money path (issue 10): a new subscriber's CCR-I reads
everything its resolution needs (subscription, alias and the account a provisioning rule
names) in one round, so a batch of them costs one read round and one write round."""

from __future__ import annotations

import shutil

import pytest

from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, ServiceReq
from chargegw.workers.charging.store import ProvisionRule, ledger_check
from chargegw.workers.charging.testing import RedisServer

E164 = 0
NOW = 1_750_000_000.0

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server binary not installed"
)


def ccr_i(sid: str, msisdn: str) -> CCOp:
    return CCOp(
        sid, 0, core.INITIAL, [ServiceReq("1:", 100, 10, 0, 10)], [(E164, msisdn)], -1,
        "client.test", "test", NOW, 100.0, 50.0,
    )  # fmt: skip


def counted(store) -> list[int]:
    """Count the store's pipeline round trips (each `_execute` is one)."""
    calls: list[int] = []
    real = store._execute

    def execute(pipe):
        calls.append(len(pipe))
        return real(pipe)

    store._execute = execute
    return calls


def test_new_subscribers_cost_one_read_round_and_one_write_round() -> None:
    pytest.importorskip("redis")
    from chargegw.workers.charging.redis_store import RedisStore

    with RedisServer() as srv:
        admin = RedisStore(srv.url, prefix="rt", timeout=2.0)
        admin.set_rules([ProvisionRule(E164, "4670", 5_000, 0)])
        store = RedisStore(srv.url, prefix="rt", timeout=2.0)
        calls = counted(store)
        ops = [ccr_i(f"s{i}", f"467000000000{i}") for i in range(5)]
        outs = store.credit_control_many(ops)
        assert outs is not None
        assert [o.result for o in outs] == [2001] * 5  # type: ignore[union-attr]
        assert len(calls) == 2, calls
        # the same subscribers again, from a cold cache: known now, nothing provisioned twice
        again = RedisStore(srv.url, prefix="rt", timeout=2.0)
        outs = again.credit_control_many([ccr_i(f"t{i}", f"467000000000{i}") for i in range(5)])
        assert outs is not None and [o.result for o in outs] == [2001] * 5  # type: ignore[union-attr]
        for i in range(5):
            info = admin.get_account(f"467000000000{i}")
            assert info is not None
            assert info.account.balance == 5_000 and info.account.reserved == 200
        assert ledger_check(admin).ok
