"""The codec's tools: the mutation fuzzer (a short run), the benchmark (it runs and checks
its own messages; its speed is not asserted), and the command-class stub."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from chargegw.codec import Message
from chargegw.codec.commands import all_classes

ROOT = Path(__file__).resolve().parent.parent


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fuzz_short_run(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz_codec.py"), "--count", "3000", "--workers", "2",
                        "--seed", "3", "--json", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    report = orjson.loads(out.read_bytes())
    assert report["inputs"] == 3000 and report["failures"] == 0
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == 3000
    # the mutations reach every layer: framing, AVP structure, values and grammar faults
    kinds = " ".join(outcomes)
    for k in ("FramingError 5015", "AvpError 5014", "faults 5004", "faults 5005", "valid"):
        assert k in kinds


def test_fuzz_harness_reports_a_non_codec_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    fuzz = load_tool("fuzz_codec")
    real = Message.find_errors

    def broken(self: Message, *, limit: int | None = None) -> list:
        if self.code == 272:
            raise KeyError("a bug")
        return real(self, limit=limit)

    monkeypatch.setattr(Message, "find_errors", broken)
    result = fuzz.work((5, 0, 300))
    assert result["outcomes"]["FAILURE"] > 0
    f = result["failures"][0]
    assert "KeyError" in f["error"] and bytes.fromhex(f["hex"])


def test_bench_runs_and_checks_its_messages(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "chargegw.cli", "bench", "codec", "--rounds", "1", "--min-time", "0.01",
                        "--json", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    rep = orjson.loads(out.read_bytes())
    for name in ("ccr_u", "cca"):
        c = rep["checks"][name]
        assert c["built_equals_vector_but_flags"] and c["relay_byte_exact"]
        res = rep["results"][name]
        assert {"decode_read", "encode", "relay", "build_encode"} <= set(res)
        assert all(v["ours"] > 0 for v in res.values())
    assert rep["checks"]["ccr_u"]["flag_differences"] == [
        "Origin-Host",
        "Origin-Realm",
        "PDP-Address",
    ]
    if rep["reference"]:
        assert (
            rep["checks"]["ccr_u"]["reference_read_value"]
            == rep["checks"]["ccr_u"]["read_value"]
            == 1048577
        )
    assert "decode+read" in r.stdout


def test_bench_dispatcher_reports_missing_targets() -> None:
    from chargegw import bench

    assert set(bench.TARGETS) == {
        "codec",
        "node",
        "gateway",
        "store",
        "load",
        "reliability",
        "scaleout",
    }
    r = subprocess.run(
        [sys.executable, "-m", "chargegw.cli", "bench", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2


def test_stub_lists_every_command_class() -> None:
    stub = ast.parse((ROOT / "codec" / "commands.pyi").read_text())
    names = {n.name for n in stub.body if isinstance(n, ast.ClassDef)}
    assert names == set(all_classes()), "run python tools/gen_stubs.py"
    ccr = next(
        n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "CreditControlRequest"
    )
    attrs = {
        t.target.id
        for t in ccr.body
        if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)
    }
    assert {"session_id", "cc_request_type", "multiple_services_credit_control"} <= attrs
