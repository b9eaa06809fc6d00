"""The Grafana dashboard (deploy/grafana/chargegw.json) against what the gateway exports.

The exported series are not listed here: a gateway is started in this process, a raw peer
connects and sends a CCR (answered 3002: no worker), and its /metrics page is read. Every
PromQL expression in the dashboard is then taken apart by a small tokenizer: each metric
it selects must be a series on that page, each label it matches, groups by or prints in a
legend must be one of those series' labels, and every exported family must be drawn by
some panel (a new series without a panel fails here)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chargegw.config import Config
from chargegw.gateway.frontend import Gateway
from chargegw.gateway.metrics import MetricsServer
from chargegw.ipc import protocol as pp
from chargegw.peer.testing import RawPeer, make_ccr

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "chargegw.json"

# Labels Prometheus itself attaches to every scraped series.
TARGET_LABELS = {"instance", "job"}

# PromQL's own words: aggregation modifiers, vector matching, set operators.
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_WORDS = _GROUPING | {"bool", "and", "or", "unless", "offset", "inf", "nan"}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
    | (?P<range>\[[^\]]*\])
    | (?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:(?:ms|[smhdwy])\b)?)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},])
    )""",
    re.X,
)


@dataclass
class Query:
    """What one expression uses."""

    metrics: list[str] = field(default_factory=list)
    matchers: list[tuple[str, str]] = field(default_factory=list)  # (metric, label)
    grouping: set[str] = field(default_factory=set)


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot read PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse(expr: str) -> Query:
    """The metric selectors, their matcher labels and the grouping labels of `expr`."""
    toks = tokens(expr)
    q = Query()
    depth = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if kind == "op" and text in "({":
            depth += 1
        elif kind == "op" and text in ")}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced brackets in {expr!r}")
        if kind != "ident":
            if kind == "op" and text == "{":
                raise ValueError(f"a selector without a metric name in {expr!r}")
            i += 1
            continue
        if text in ("group_left", "group_right") and nxt != ("op", "("):
            i += 1  # the label list is optional here
            continue
        if text in _GROUPING:
            if nxt != ("op", "("):
                raise ValueError(f"{text} without a label list in {expr!r}")
            j = i + 2
            while toks[j] != ("op", ")"):
                if toks[j][0] == "ident":
                    q.grouping.add(toks[j][1])
                j += 1
            i = j + 1
            continue
        if text.lower() in _WORDS:
            i += 1
            continue
        if nxt == ("op", "(") or nxt[1] in ("by", "without"):
            i += 1  # a function or an aggregation
            continue
        q.metrics.append(text)
        i += 1
        if nxt == ("op", "{"):
            depth += 1
            i += 1
            while toks[i] != ("op", "}"):
                label, op, value = toks[i], toks[i + 1], toks[i + 2]
                if label[0] != "ident" or op[0] != "op" or value[0] != "str":
                    raise ValueError(f"bad matcher in {expr!r}")
                q.matchers.append((text, label[1]))
                i += 3
                if toks[i] == ("op", ","):
                    i += 1
            depth -= 1
            i += 1
    if depth:
        raise ValueError(f"unbalanced brackets in {expr!r}")
    return q


def dashboard_queries(dash: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(where, expr, legend labels) for every panel target and templating query."""
    out: list[tuple[str, str, list[str]]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", ""))
                out.append((f"panel {p.get('title')!r} {t.get('refId')}", t["expr"], legend))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query)
        assert m, f"templating {var['name']}: only label_values(series, label) is understood"
        out.append((f"variable {var['name']}", m.group(1), [m.group(2)]))
    return out


# The exported series, from a live gateway -----------------------------------------------


def _exported(tmp_path: Path) -> tuple[dict[str, set[str]], dict[str, str]]:
    """(sample name -> its label names, sample name -> its family) read off /metrics."""
    cfg = msgspec.convert(
        {"data_dir": str(tmp_path / "data"), "listen": [{"address": "127.0.0.1", "port": 0}]},
        Config,
    )

    async def main() -> str:
        gw = Gateway(cfg)
        gw.start_pool()
        await gw.node.start()
        try:
            port = gw.listen_addresses()[0][1]
            peer = await RawPeer.connect("127.0.0.1", port)
            await peer.handshake("client.test", "test")
            await peer.send(make_ccr("client.test", "test", "localdomain", hop_by_hop=5))
            ans = await peer.recv_until(272, request=False)
            assert ans is not None
            srv = MetricsServer(gw, "127.0.0.1", 0)
            # A worker registers and reports (through the pool's own frame decoding), so
            # that the worker families carry their labels; read before the loop runs on
            # (the gateway would drop this worker, unreachable, on its next flush).
            nt, ns = len(pp.WORKER_TIME_BUCKETS) + 1, len(pp.STORE_BUCKETS) + 1
            stats = pp.Stats(
                boot=1, apps=[pp.AppTime(4, [1] + [0] * (nt - 1), 0.0001)],
                store_counts=[1] + [0] * (ns - 1), store_sum=0.0001,
                units=[pp.Units(100, 10, 10, 1)], shards=64, store=pp.STORE_OK,
            )  # fmt: skip
            ready = pp.Ready(worker_id="w.test", credit=1, apps=[4], store=pp.STORE_OK)
            gw.pool._on_frames([[b"w.test", pp.encode([ready, stats])]])
            status, _ctype, body = srv.respond("GET", "/metrics")
            assert status == 200
            peer.close()
            return body.decode()
        finally:
            await gw.stop(drain_timeout=0.0)

    text = asyncio.run(asyncio.wait_for(main(), 30))
    labels: dict[str, set[str]] = {}
    family_of: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        names = {s.name for s in fam.samples}
        if not names:  # a family with no sample yet: its names by type
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
            names = {fam.name + s for s in suffixes.get(fam.type, [""])}
        for n in names:
            family_of[n] = fam.name
            labels.setdefault(n, set())
        for s in fam.samples:
            labels[s.name] |= set(s.labels)
    return labels, family_of


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, set[str]], dict[str, str]]:
    return _exported(tmp_path_factory.mktemp("dash"))


def test_every_dashboard_query_names_exported_series_and_labels(
    exported: tuple[dict[str, set[str]], dict[str, str]],
) -> None:
    labels, family_of = exported
    assert any(n.startswith("chargegw_") for n in labels), labels  # the page was read
    dash = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dash)
    assert len(queries) >= 20
    used_families: set[str] = set()
    problems: list[str] = []
    for where, expr, legend in queries:
        q = parse(expr)
        if not q.metrics:
            problems.append(f"{where}: names no series: {expr}")
        known: set[str] = set(TARGET_LABELS)
        for name in q.metrics:
            if name not in labels:
                problems.append(f"{where}: {name} is not exported")
                continue
            used_families.add(family_of[name])
            known |= labels[name]
        for name, label in q.matchers:
            if name in labels and label not in labels[name] | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
        for label in q.grouping | set(legend):
            if label not in known:
                problems.append(f"{where}: label {label!r} is on none of {q.metrics}")
        if q.grouping and legend and not set(legend) <= q.grouping | TARGET_LABELS:
            problems.append(f"{where}: legend {legend} prints labels the query drops")
    assert not problems, "\n".join(problems)
    undrawn = sorted(set(family_of.values()) - used_families)
    assert not undrawn, f"exported but on no panel: {undrawn}"


def test_the_dashboard_is_importable_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            ids.append(p["id"])
            assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
            if p["type"] != "row":
                assert p["targets"], p["title"]
                assert p["datasource"]["uid"] == "${datasource}", p["title"]
            walk(p.get("panels", []))

    walk(dash["panels"])
    assert len(ids) == len(set(ids))


def test_the_query_reader_catches_what_it_must() -> None:
    q = parse(
        'histogram_quantile(0.99, sum by (le, app) (rate(chargegw_x_bucket{instance=~"$i",'
        'result_code=~"2.."}[$__rate_interval]))) / on (app) group_left sum(chargegw_y) by (peer)'
    )
    assert q.metrics == ["chargegw_x_bucket", "chargegw_y"]
    assert q.matchers == [("chargegw_x_bucket", "instance"), ("chargegw_x_bucket", "result_code")]
    assert q.grouping == {"le", "app", "peer"}
    assert parse("time() - chargegw_start_time_seconds offset 5m").metrics == [
        "chargegw_start_time_seconds"
    ]
    for bad in ('{__name__="x"}', "sum(rate(x[5m])", "sum by x (y)"):
        with pytest.raises(ValueError):
            parse(bad)


def test_each_panels_queries_have_distinct_ref_ids() -> None:
    """Grafana keys a panel's queries by refId: a repeated one hides a series."""

    def panels(ps: list[dict[str, Any]]) -> Any:
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    dash = json.loads(DASHBOARD.read_text())
    for p in panels(dash["panels"]):
        ids = [t.get("refId") for t in p.get("targets", [])]
        assert len(ids) == len(set(ids)), (p.get("title"), ids)
