"""docs/operations.md stays true to the code: the sections the operator needs, Result-Codes
that exist, config keys the schema has, commands the CLI has, counters the pool keeps, and a
backup command that really copies a live WAL database."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from chargegw.cli import SUBCOMMANDS
from chargegw.codec.constants import ResultCode
from chargegw.config.schema import Config
from chargegw.gateway.pool import Counters

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "operations.md").read_text()


def test_the_sections_an_operator_needs() -> None:
    headings = re.findall(r"^## (.+)$", DOC, re.M)
    for wanted in (
        "Architecture",
        "Deploy",
        "Scale workers and gateways",
        "TLS and the security model",
        "Metrics and dashboards",
        "Reload and shutdown",
        "Backup and restore",
        "Upgrading",
        "Troubleshooting",
    ):
        assert wanted in headings, wanted
    subs = re.findall(r"^### (.+)$", DOC, re.M)
    assert {"Single host", "Docker Compose", "Several hosts"} <= set(subs)


def test_troubleshooting_codes_exist_with_their_names() -> None:
    rows = re.findall(r"^\| \*\*(\d{4})\*\* (DIAMETER_\w+)", DOC, re.M)
    listed = {int(code) for code, _ in rows}
    for code, name in rows:
        assert ResultCode(int(code)).name == name, code
    assert {3002, 3004, 3010, 5001, 5002, 5003, 5004, 5005, 5012, 5030, 4010, 4012} <= listed


def _schema_paths() -> set[str]:
    import msgspec

    out: set[str] = set()

    def walk(info: object, prefix: str) -> None:
        for f in info.fields:  # type: ignore[attr-defined]
            t = f.type
            if isinstance(t, msgspec.inspect.UnionType):
                t = next(x for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
            if isinstance(t, msgspec.inspect.ListType) and isinstance(
                t.item_type, msgspec.inspect.StructType
            ):
                t = t.item_type
            path = f"{prefix}{f.name}"
            out.add(path)
            if isinstance(t, msgspec.inspect.StructType):
                walk(t, path + ".")

    walk(msgspec.inspect.type_info(Config), "")
    return out


def test_every_config_key_named_exists() -> None:
    paths = _schema_paths()
    tables = {p for p in paths if "." not in p}
    named = set(re.findall(r"`([a-z_]+\.[a-z_.]+)`", DOC))
    ours = {n for n in named if n.split(".")[0] in tables}
    assert ours, "the guide names no key?"
    assert not sorted(ours - paths), "keys the schema does not have"


def test_every_command_named_exists() -> None:
    commands = set(re.findall(r"`chargegw ([a-z]+)", DOC))
    assert commands and not sorted(commands - set(SUBCOMMANDS))


def _exported() -> tuple[set[str], set[str]]:
    """(family and sample names, label names) of a gateway's /metrics, read from the
    registry a Gateway builds (no traffic: families without samples count by name)."""
    import msgspec
    from prometheus_client.parser import text_string_to_metric_families

    from chargegw.gateway.frontend import Gateway
    from chargegw.gateway.metrics import MetricsServer, worker_figures
    from chargegw.ipc import protocol as pp

    cfg = msgspec.convert({"data_dir": "/nonexistent", "listen": []}, Config)
    gw = Gateway(cfg)
    gw.metrics.request(4, 272)
    gw.metrics.answer(4, 272, 2001, 0.001)
    # A worker's figures (the OCS's units by rating group), as its Stats report them.
    worker_figures(gw).ingest(b"w", pp.Stats(boot=1, units=[pp.Units(1, 1, 1, 1)]), 0.0)
    _status, _ctype, body = MetricsServer(gw, "127.0.0.1", 0).respond("GET", "/metrics")
    names: set[str] = set()
    labels: set[str] = {"peer", "state"}  # on the peer series, which need a live peer
    for fam in text_string_to_metric_families(body.decode()):
        names.add(fam.name)
        for sample in fam.samples:
            names.add(sample.name)
            labels |= set(sample.labels)
    return names, labels


def test_counters_and_series_named_are_the_gateways() -> None:
    from chargegw.gateway.metrics import NODE_COUNTERS, POOL_COUNTERS, AnswerStats, status_section
    from chargegw.gateway.status_cli import derive

    section = DOC.split("## Metrics and dashboards", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", section))
    assert {"shed_busy", "expired", "no_worker"} <= named
    series, labels = _exported()
    fam_prefix = "chargegw_pool_workers"
    for n in re.findall(r"`(chargegw_[a-z_<>]+)", section):
        if "<" not in n:
            assert n in series, f"{n} is not exported"
    counters = set(Counters.__slots__) | set(POOL_COUNTERS) | set(NODE_COUNTERS)
    fe = {"front_end": status_section(AnswerStats()), "uptime_s": 1.0}
    cli_keys = set(
        derive(
            fe,
            {
                **fe,
                "uptime_s": 2.0,
                "front_end": {**fe["front_end"], "clock_s": fe["front_end"]["clock_s"] + 1},
            },
        )
    )
    cli_keys |= _status_fields()
    for n in sorted(x for x in named if "_" in x and not x.startswith("chargegw_")):
        if n.startswith("_"):  # a suffix in "`chargegw_pool_workers`, `_credit`, ..."
            assert "chargegw_pool" + n in series or fam_prefix + n in series, n
            continue
        assert n in counters | labels | cli_keys, f"{n}: no such counter, label or field"


def _status_fields() -> set[str]:
    """The keys of `chargegw status`'s worker rows (with a report), of a worker that left,
    and of the per-worker rates, as the code makes them."""
    from chargegw.gateway.metrics import worker_figures
    from chargegw.gateway.pool import PoolCore
    from chargegw.gateway.pool_io import PoolServer
    from chargegw.gateway.status_workers import derive_workers
    from chargegw.ipc import protocol as pp

    core = PoolCore(deadline=1.0, heartbeat_timeout=1.0)
    core.register(b"w", worker_id="h-w0.1", credit=1, apps=[4], now=0.0)
    server = PoolServer(core, [], deliver=lambda *a: None, error_answer=lambda *a: None)
    figs = worker_figures(type("Gw", (), {"core": core, "pool": server})())
    counts = [1] + [0] * len(pp.STORE_BUCKETS)
    figs.ingest(b"w", pp.Stats(boot=1, store_counts=counts, store_sum=0.001), 0.0)
    server._gone(core.workers[b"w"], "silent", 0.0)
    doc = server.status()
    row, gone = doc["pool"]["workers"][0], doc["pool"]["gone"][0]
    rates = derive_workers(doc, doc, 1.0)["h-w0.1"]
    return {*row, *row["report"], *gone, *rates}


def test_every_pool_counter_is_in_the_status_table() -> None:
    from chargegw.gateway.metrics import POOL_COUNTERS

    table = DOC.split("**Pool counters** in `chargegw status`", 1)[1].split("\n\n", 2)[1]
    rows = dict(re.findall(r"^\| `([a-z_]+)`( \*)? \|", table, re.M))
    from chargegw.gateway.pool_io import SERVER_COUNTERS

    assert set(rows) == set(Counters.__slots__) | set(SERVER_COUNTERS)
    # Marked * exactly when /metrics does not export it.
    assert {n for n, star in rows.items() if star} == set(rows) - set(POOL_COUNTERS)


def test_backup_command_copies_a_live_wal_database(tmp_path: Path) -> None:
    """The guide's Python backup line copies what is still only in the -wal file."""
    line = next(x for x in DOC.splitlines() if x.startswith('python -c "import sqlite3'))
    src, dst = tmp_path / "charging.db", tmp_path / "backup" / "charging.db"
    dst.parent.mkdir()
    db = sqlite3.connect(src, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # keep everything in the WAL
    db.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount INTEGER)")
    db.executemany("INSERT INTO ledger (amount) VALUES (?)", [(i,) for i in range(1000)])
    assert (tmp_path / "charging.db-wal").stat().st_size > 0
    cmd = line.replace("/data/charging.db", str(src)).replace("/backup/charging.db", str(dst))
    cmd = cmd.replace("python -c", f"{sys.executable} -c", 1)
    subprocess.run(cmd, shell=True, check=True, timeout=60)
    copy = sqlite3.connect(dst)
    assert copy.execute("SELECT count(*), sum(amount) FROM ledger").fetchone() == (
        1000,
        sum(range(1000)),
    )
    db.close()
