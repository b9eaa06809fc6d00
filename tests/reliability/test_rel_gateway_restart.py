"""Issue 14, gateway restart: `chargegw run` (Gy, and Rf on the default SQLite CDR store) is
killed mid-run and started again on the same data dir and port while `chargegw load
--reconnect` runs Gy and Rf sessions on three connections (each its own Origin-Host). The
generator must reconnect and finish, resending what had no answer with the T flag; every ACR
answered 2001 must be in the CDR store exactly once (read with `chargegw cdr export`), the
ledger must reconcile and match the usage reported, and nothing may be debited twice. The
scenario is `chargegw.loadtest.reliability.gateway_restart` (also in `chargegw bench
reliability`); loopback only, every process killed at the end."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from chargegw.loadtest import reliability as rel

pytestmark = pytest.mark.timeout(240)


def _show(r: rel.Result) -> str:
    return f"{r.failures}\n{r.details}"


def _check(r: rel.Result, connections: int) -> None:
    assert r.faults == 1, _show(r)
    assert r.offered > 100 and r.answered == r.offered and r.lost == 0, _show(r)
    assert r.details["reconnects"] >= connections, _show(r)
    assert r.details["acked_acrs"] > 50, _show(r)
    assert r.double_charges == 0, _show(r)
    assert r.ledger_ok is True and r.ledger_diff_micro == 0, _show(r)
    assert r.passed, _show(r)


def test_gateway_sigkilled_and_restarted_every_acked_acr_stored_once(tmp_path: Path) -> None:
    r = rel.gateway_restart(tmp_path, signal.SIGKILL, connections=3)
    _check(r, 3)


def test_gateway_stopped_with_sigterm_and_restarted(tmp_path: Path) -> None:
    r = rel.gateway_restart(tmp_path, signal.SIGTERM, connections=3)
    _check(r, 3)
