"""Presentation: the live progress line, the final table, the JSON file and the plot.

rich draws the progress line in place and the table when it is installed and stderr/stdout is
a terminal; otherwise the same figures come out as plain lines, so logs and pipes stay
readable. matplotlib (the `plot` extra) is imported only for `--plot`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson

SCHEMA = "chargegw-load/1"


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.3f}"


class ProgressLine:
    """One line a second: rate, p99 of the last second, errors, elapsed / remaining."""

    def __init__(self, total_s: float | None, sessions: int | None, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total_s = total_s
        self.sessions = sessions
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.live: Any = None
        if enabled and self.stream.isatty():
            try:
                from rich.console import Console  # noqa: PLC0415
                from rich.live import Live  # noqa: PLC0415

                self.live = Live("", console=Console(file=self.stream), transient=False,
                                 auto_refresh=False)
                self.live.start()
            except ImportError:
                self.live = None

    def text(self, row: dict[str, Any]) -> str:
        tot = row["total"]
        failed = tot["errors"] + tot["timeouts"] + tot["mismatches"] + tot["lost"]
        elapsed = row["t"]
        rest = ""
        if self.total_s:
            rest = f" / {max(self.total_s - elapsed, 0):.0f}s left"
        elif self.sessions:
            rest = f" sessions {tot['sessions_started']}/{self.sessions}"
        p99 = "-" if row["p99"] is None else f"{row['p99']:.2f}ms"
        return (f"[{elapsed:>4}s{rest}] {row['answered']:,}/s answered, p99 {p99}, "
                f"sent {tot['sent']:,} answered {tot['answered']:,} errors {tot['errors']:,} "
                f"timeouts {tot['timeouts']:,} mismatches {tot['mismatches']:,}"
                + (f" ({failed / tot['sent']:.2%} failed)" if tot["sent"] else ""))

    def __call__(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = self.text(row)
        if self.live is not None:
            self.live.update(line, refresh=True)
        else:
            print("  " + line, file=self.stream, flush=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def table_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    lat = s["latency_ms"]
    rows = [
        ("sent", f"{s['sent']:,}"),
        ("answered", f"{s['answered']:,}"),
        ("  2xxx (ok)", f"{s['ok']:,}"),
    ]
    rows += [(f"  Result-Code {k}", f"{v:,}") for k, v in s["result_codes"].items()]
    rows += [
        ("timeouts", f"{s['timeouts']:,}"),
        ("mismatches", f"{s['mismatches']:,}"
         + "".join(f" {k}={v}" for k, v in s["mismatch_kinds"].items() if v)),
        ("lost (connection closed)", f"{s['lost']:,}"),
    ]
    if s.get("reconnects") or s.get("resent"):
        rows.append(("reconnects / resent (T flag)",
                     f"{s.get('reconnects', 0):,} / {s.get('resent', 0):,}"))
    rows += [
        ("error rate", f"{s['error_rate']:.4%}"),
        ("sessions completed / started",
         f"{s['sessions_completed']:,} / {s['sessions_started']:,}"),
        ("elapsed (after warm-up)", f"{s['elapsed_s']:,.3f} s"),
        ("throughput", f"{s['answers_per_s']:,.1f} answers/s"
         + (f" (offered {s['offered_rate']:,.0f} sessions/s)" if s["offered_rate"] else "")),
    ]
    rows += [(f"latency {k}", f"{_fmt_ms(lat[k])} ms")
             for k in ("p50", "p90", "p99", "p999", "max")]
    lag = s["send_lag_ms"]
    rows.append(("generator send lag p50 / p99", f"{_fmt_ms(lag['p50'])} / {_fmt_ms(lag['p99'])} ms"))
    for step, st in s["by_step"].items():
        sl = st["latency_ms"]
        rows.append((f"  {step}", f"{st['answered']:,} answered, p50 {_fmt_ms(sl['p50'])} "
                                  f"p99 {_fmt_ms(sl['p99'])} ms"))
    sreq = {k: v for k, v in s["server_requests"].items() if v}
    if sreq:
        rows.append(("server requests answered", " ".join(f"{k}={v}" for k, v in sreq.items())))
    return rows


def print_table(s: dict[str, Any], title: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    rows = table_rows(s)
    if stream.isatty():
        try:
            from rich.console import Console  # noqa: PLC0415
            from rich.table import Table  # noqa: PLC0415

            t = Table(title=title, show_header=False)
            t.add_column("what")
            t.add_column("value", justify="right")
            for k, v in rows:
                t.add_row(k, v)
            Console(file=stream).print(t)
            _print_problems(s, stream)
            return
        except ImportError:
            pass
    print(title, file=stream)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=stream)
    _print_problems(s, stream)


def _print_problems(s: dict[str, Any], stream: TextIO) -> None:
    for p in s.get("problems", []):
        print(f"problem: {p}", file=stream)


def write_json(path: str, report: dict[str, Any]) -> None:
    with open(path, "wb") as f:
        f.write(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def plot(path: str, summary: dict[str, Any], title: str) -> str | None:
    """Throughput and latency percentiles over time; an error message when matplotlib is absent."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return "--plot needs matplotlib: pip install 'chargegw[plot]'"
    series = summary["series"]
    t = [r["t"] for r in series]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    ax1.plot(t, [r["answered"] for r in series], label="answers/s")
    ax1.plot(t, [r["errors"] + r["timeouts"] for r in series], label="errors+timeouts/s")
    ax1.set_ylabel("per second")
    ax1.legend(loc="best")
    ax1.set_title(title)
    for k in ("p50", "p90", "p99", "max"):
        ax2.plot(t, [r[k] if r[k] is not None else float("nan") for r in series], label=k)
    ax2.set_yscale("log")
    ax2.set_ylabel("latency ms")
    ax2.set_xlabel("seconds after warm-up")
    ax2.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
