"""Rf: ACR records are stored before 2001, once, and exported by `chargegw cdr export`."""

from __future__ import annotations

import csv
import io

import orjson

from chargegw.codec import Message, commands
from chargegw.workers import cdr_cli
from chargegw.workers.charging.rf import AccountingApp
from chargegw.workers.charging.testing import FakeWorkerContext, answer


def acr(rtype, number, sid="pgw;1", **kw):
    args = dict(
        session_id=sid, origin_host="pgw.test", origin_realm="test", destination_realm="cdf",
        accounting_record_type=rtype, accounting_record_number=number, acct_application_id=3,
        service_context_id="32251@3gpp.org",
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "4670000000001"}],
    )  # fmt: skip
    args.update(kw)
    return Message.decode(commands.AccountingRequest(**args).encode())


def make(tmp_path, conf=None):
    app = AccountingApp()
    app.setup(FakeWorkerContext(str(tmp_path), conf or {}))
    return app


def test_records_are_stored_and_answered(tmp_path):
    app = make(tmp_path, {"interim_interval": 300})
    for rtype, n in ((2, 0), (3, 1), (4, 2)):
        a = answer(app, acr(rtype, n), None)
        assert a.result_code == 2001 and int(a.accounting_record_type) == rtype
        assert (
            a.accounting_record_number == n
            and a.acct_application_id == 3
            and a.acct_interim_interval == 300
        )
    a = answer(app, acr(1, 0, sid="sms;1"), None)
    assert a.result_code == 2001
    cdrs = list(app.store.iter_cdrs())
    assert [(c.session_id, c.record_number, c.record_type) for c in cdrs] == [
        ("pgw;1", 0, 2), ("pgw;1", 1, 3), ("pgw;1", 2, 4), ("sms;1", 0, 1),
    ]  # fmt: skip
    assert (
        cdrs[0].subscriptions == [(0, "4670000000001")]
        and cdrs[0].service_context_id == "32251@3gpp.org"
    )


def test_duplicates_are_stored_once_and_answered_again(tmp_path):
    app = make(tmp_path)
    assert answer(app, acr(2, 0), None).result_code == 2001
    dup = acr(2, 0)
    dup.is_retransmit = True
    a = answer(app, Message.decode(dup.encode()), None)
    assert a.result_code == 2001 and a.accounting_record_number == 0
    assert len(list(app.store.iter_cdrs())) == 1 and app.duplicates == 1


def test_bad_acrs(tmp_path):
    app = make(tmp_path)
    req = acr(2, 0)
    req.remove("Accounting-Record-Number")
    a = Message.decode(answer(app, Message.decode(req.encode()), None).encode())
    assert (
        a.result_code == 5005
        and (
            a.failed_avp[0] if isinstance(a.failed_avp, list) else a.failed_avp
        ).accounting_record_number
        is not None
    )
    a = answer(app, acr(9, 0), None)
    assert a.result_code == 5004
    assert list(app.store.iter_cdrs()) == []


def test_cdr_export_jsonl_and_csv(tmp_path, capsys):
    app = make(tmp_path)
    answer(app, acr(2, 0), None)
    answer(app, acr(4, 1), None)
    out = tmp_path / "cdrs.jsonl"
    assert (
        cdr_cli.main(
            ["export", "--data-dir", str(tmp_path), "--format", "jsonl", "--output", str(out)]
        )
        == 0
    )
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [(r["session_id"], r["record_number"]) for r in rows] == [("pgw;1", 0), ("pgw;1", 1)]
    assert cdr_cli.main(["export", "--data-dir", str(tmp_path), "--format", "csv"]) == 0
    text = capsys.readouterr().out
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["record_type"] for r in table] == ["2", "4"]
    later = rows[1]["received"]
    assert (
        cdr_cli.main(
            ["export", "--data-dir", str(tmp_path), "--format", "jsonl", "--since", str(later)]
        )
        == 0
    )
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


def test_each_cdr_commit_is_timed_in_the_worker_store_series(tmp_path):
    from chargegw.workers.stats import STATS

    app = make(tmp_path)
    before, errors = sum(STATS.store_counts), STATS.store_errors
    for n in range(3):
        assert answer(app, acr(3, n), None).result_code == 2001
    assert sum(STATS.store_counts) == before + 3 and STATS.store_errors == errors


def test_a_cdr_store_outage_is_3004_and_counted_as_the_workers_busy_answer(tmp_path):
    from chargegw.workers.charging.store import StoreUnavailable
    from chargegw.workers.stats import STATS

    app = make(tmp_path)

    def down(*_a, **_k):
        raise StoreUnavailable("disk gone")

    app.store.put_cdrs = down  # type: ignore[union-attr]
    app.store.put_cdr = down  # type: ignore[union-attr]
    busy, errors = STATS.busy, STATS.errors
    a = answer(app, acr(2, 0, sid="pgw;down"), None)
    assert a.result_code == 3004
    assert (STATS.busy - busy, STATS.errors - errors) == (1, 1)
