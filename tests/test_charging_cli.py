"""The accounts and ledger commands against a real SQLite store in a temporary data dir."""

from __future__ import annotations

import subprocess
import sys

from chargegw.codec import Message, commands
from chargegw.workers import accounts_cli, ledger_cli
from chargegw.workers.charging.gy import CreditControlApp
from chargegw.workers.charging.testing import FakeWorkerContext, answer

CSV = """id,balance,credit_limit,blocked,msisdn,imsi
alice,10.50,0,false,46111,24001111
bob,0,-5.00,no,46222,
"""


def dd(tmp_path):
    return ["--data-dir", str(tmp_path)]


def test_import_show_topup_block(tmp_path, capsys):
    f = tmp_path / "a.csv"
    f.write_text(CSV)
    assert accounts_cli.main(["import", str(f), *dd(tmp_path)]) == 0
    assert "imported 2 accounts" in capsys.readouterr().out
    assert accounts_cli.main(["show", "alice", *dd(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "balance       10.500000" in out and "msisdn 46111" in out and "imsi 24001111" in out
    assert accounts_cli.main(["show", "46222", *dd(tmp_path)]) == 0  # by subscription id
    assert "account       bob" in capsys.readouterr().out
    assert accounts_cli.main(["topup", "bob", "2.25", *dd(tmp_path)]) == 0
    assert "balance 2.250000" in capsys.readouterr().out
    assert accounts_cli.main(["block", "bob", *dd(tmp_path)]) == 0
    assert accounts_cli.main(["show", "bob", *dd(tmp_path)]) == 0
    assert "blocked       yes" in capsys.readouterr().out
    assert accounts_cli.main(["show", "nobody", *dd(tmp_path)]) == 1
    assert accounts_cli.main(["topup", "bob", "1.0000001", *dd(tmp_path)]) == 1
    assert accounts_cli.main(["topup", "bob", "-3", *dd(tmp_path)]) == 1
    assert ledger_cli.main(["check", *dd(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "credits           12.750000" in out and "ledger OK" in out


def test_bad_csv_imports_nothing(tmp_path, capsys):
    f = tmp_path / "bad.csv"
    f.write_text("id,balance\ncarol,1.00\ndave,lots\n")
    assert accounts_cli.main(["import", str(f), *dd(tmp_path)]) == 1
    assert "line 3" in capsys.readouterr().err
    assert accounts_cli.main(["show", "carol", *dd(tmp_path)]) == 1


def test_ledger_check_after_traffic_and_after_tampering(tmp_path, capsys):
    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {}))
    for i in range(20):
        base = dict(
            session_id=f"s{i}", origin_host="c", origin_realm="r", destination_realm="o",
            auth_application_id=4, service_context_id="32251@3gpp.org",
            subscription_id=[{"subscription_id_type": 0, "subscription_id_data": f"46700000000{i:02d}"}],
        )  # fmt: skip
        for t, n, extra in (
            (1, 0, {"requested_service_unit": {}}),
            (3, 1, {"used_service_unit": [{"cc_time": 90}]}),
        ):
            answer(app,
                Message.decode(
                    commands.CreditControlRequest(
                        cc_request_type=t, cc_request_number=n, **base, **extra
                    ).encode()
                ),
                None,
            )
    assert ledger_cli.main(["check", *dd(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "debits            0.400000" in out and "ledger OK" in out
    app.store.db.execute("UPDATE accounts SET balance = balance - 7 WHERE id = '4670000000003'")
    assert ledger_cli.main(["check", "--json", *dd(tmp_path)]) == 1
    assert "4670000000003" in capsys.readouterr().out


def test_console_command_dispatch(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "chargegw.cli", "ledger", "check", *dd(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "ledger OK" in r.stdout
