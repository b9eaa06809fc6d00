"""Rf idempotency across a restart: an ACR stored before the CDF went down and sent again
afterwards (T flag, same Session-Id and Accounting-Record-Number, as a client resends what it
had no answer for) is answered 2001 and recognised as a duplicate by the reopened store."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargegw.codec import Message, commands
from chargegw.workers.charging import store as store_mod
from chargegw.workers.charging.rf import AccountingApp
from chargegw.workers.charging.testing import FakeWorkerContext, answer


def acr(rtype: int, number: int, sid: str) -> Message:
    return Message.decode(commands.AccountingRequest(
        session_id=sid, origin_host="pgw.test", origin_realm="test", destination_realm="cdf",
        accounting_record_type=rtype, accounting_record_number=number, acct_application_id=3,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "4670000000001"}],
    ).encode())  # fmt: skip


def _fresh_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AccountingApp:
    """An AccountingApp as a restarted worker builds it: no store object carried over."""
    monkeypatch.setattr(store_mod, "_open", {})
    app = AccountingApp()
    app.setup(FakeWorkerContext(str(tmp_path), {}))
    return app


def test_acr_resent_after_restart_is_a_duplicate(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = _fresh_app(tmp_path, monkeypatch)
    assert answer(first, acr(2, 0, sid="pgw;restart"), None).result_code == 2001
    assert answer(first, acr(3, 1, sid="pgw;restart"), None).result_code == 2001
    assert first.store is not None
    first.store.close()

    again = _fresh_app(tmp_path, monkeypatch)
    assert again.store is not first.store
    for rtype, n in ((3, 1), (4, 2)):  # the interim had no answer; the stop is new
        req = acr(rtype, n, sid="pgw;restart")
        req.is_retransmit = rtype == 3
        a = answer(again, Message.decode(req.encode()), None)
        assert a.result_code == 2001 and a.accounting_record_number == n
    assert again.duplicates == 1
    keys = [(c.session_id, c.record_number) for c in again.store.iter_cdrs()]
    assert sorted(keys) == [("pgw;restart", 0), ("pgw;restart", 1), ("pgw;restart", 2)]
