"""The commit window (issue 10): batches drained within `commit_window_ms` share one store
step, so one fsynced commit carries as many CCRs as one batch did before the load was split
over workers. No answer exists before that commit; a full group (64) commits at once; a
window of 0 commits each batch by itself; charges stay the same as without the window."""

from __future__ import annotations

import asyncio
from typing import Any

from test_charging_gy import ccr as gy_ccr

from chargegw.codec import Message
from chargegw.workers.api import Incoming, RequestContext
from chargegw.workers.charging.gy import WINDOW_MAX, CreditControlApp
from chargegw.workers.charging.store import ledger_check
from chargegw.workers.charging.testing import FakeWorkerContext

MSISDN = "4670000000077"
CTX = RequestContext(peer="", deadline=0.0)


def ccr(sid: str, rtype: int = 1, number: int = 0, used: int | None = None) -> bytes:
    """test_charging_gy's CCR, as wire bytes, asking for 600 s."""
    return gy_ccr(rtype, number, sid=sid, msisdn=MSISDN, hbh=9,
                  requested_service_unit={"cc_time": 600},
                  used_service_unit=None if used is None else [{"cc_time": used}]).encode()  # fmt: skip


def setup(tmp_path, window: float) -> tuple[CreditControlApp, list[tuple[str, int]]]:
    """The app with a window, and a log of its store's commits and answers, in order."""
    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {"commit_window_ms": window}))
    log: list[tuple[str, int]] = []
    store = app.store
    assert store is not None
    real = store.credit_control_many

    def many(ops: Any, wait: bool = True) -> Any:
        out = real(ops, wait)  # returns once its transactions are committed
        log.append(("commit", len(ops)))
        return out

    store.credit_control_many = many  # type: ignore[method-assign]
    return app, log


def batch(app: CreditControlApp, raws: list[bytes]) -> Any:
    return app.handle_batch([Incoming(r, CTX) for r in raws])


def test_batches_within_the_window_share_one_commit_and_wait_for_it(tmp_path):
    app, log = setup(tmp_path, 50.0)

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(batch(app, [ccr("w1"), ccr("w2")]))
        second = asyncio.ensure_future(batch(app, [ccr("w3")]))
        first.add_done_callback(lambda _f: log.append(("answered", 1)))
        second.add_done_callback(lambda _f: log.append(("answered", 2)))
        t0 = loop.time()
        await asyncio.sleep(0.005)
        assert not first.done() and not second.done() and log == []  # nothing committed yet
        got = await asyncio.gather(first, second)
        assert loop.time() - t0 >= 0.045  # held for the window, not answered at once
        return got

    first, second = asyncio.run(main())
    assert log[0] == ("commit", 3)  # one store step for both batches
    assert log[1:] == [("answered", 1), ("answered", 2)]
    codes = [Message.decode(a).result_code for a in [*first, *second]]
    assert codes == [2001, 2001, 2001]


def test_a_full_group_commits_without_waiting_out_the_window(tmp_path):
    app, log = setup(tmp_path, 50.0)

    async def main() -> list[Any]:
        half = WINDOW_MAX // 2
        a = batch(app, [ccr(f"f{i}") for i in range(half)])
        assert log == []
        b = batch(app, [ccr(f"f{i}") for i in range(half, WINDOW_MAX)])
        assert log == [("commit", WINDOW_MAX)]  # committed as the group filled
        return [*(await a), *(await b)]

    got = asyncio.run(main())
    assert all(Message.decode(x).result_code == 2001 for x in got)


def test_window_zero_commits_each_batch_by_itself(tmp_path):
    app, log = setup(tmp_path, 0.0)

    async def main() -> None:
        a = batch(app, [ccr("z1")])
        b = batch(app, [ccr("z2")])
        assert isinstance(a, list) and isinstance(b, list)  # answered at once
        assert log == [("commit", 1), ("commit", 1)]

    asyncio.run(main())


def test_the_window_charges_like_batches_committed_one_by_one(tmp_path):
    """The same traffic, batch by batch, with and without the window: same answers, same
    balance, ledger OK; CCR-I, -U and -T of one session in consecutive batches keep order."""

    def traffic(window: float, where) -> tuple[list[int], int]:
        app, _ = setup(where, window)

        async def main() -> list[Any]:
            waves = [
                [ccr(f"s{i}", 1, 0) for i in range(5)],
                [ccr(f"s{i}", 2, 1, used=61) for i in range(5)],
                [ccr(f"s{i}", 3, 2, used=30) for i in range(5)] + [ccr("s0", 3, 2, used=30)],
            ]
            pend = [asyncio.ensure_future(_list(batch(app, w))) for w in waves]
            return [a for p in pend for a in await p]

        answers = asyncio.run(main())
        assert app.store is not None
        rep = ledger_check(app.store, app.rater.tariff_by_key)
        assert rep.ok
        acct = app.store.get_account(MSISDN).account
        assert acct.reserved == 0
        return [Message.decode(a).result_code for a in answers], acct.balance

    with_window = traffic(20.0, tmp_path / "w")
    without = traffic(0.0, tmp_path / "n")
    assert with_window == without
    assert with_window[1] < 100_000_000  # something was charged


async def _list(res: Any) -> list[Any]:
    return res if isinstance(res, list) else await res
