"""The image runs as a fixed non-root uid that owns its data and socket directories, keeps
keys out of the build context, and has a health check that answers 0 for a running gateway
and 1 for none (checked here with the check's own shell command; there is no container
engine on this host)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from chargegw.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instruction(name: str) -> str:
    """The text of the (last) `name` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    found = [line for line in joined.splitlines() if line.startswith(name + " ")]
    assert found, name
    return found[-1][len(name) + 1 :].strip()


def test_runs_as_a_fixed_non_root_user() -> None:
    uid = re.search(r"^ARG CHARGEGW_UID=(\d+)$", DOCKERFILE, re.M)
    assert uid and int(uid.group(1)) >= 1000
    assert _instruction("USER") == "${CHARGEGW_UID}:${CHARGEGW_UID}"
    run = _instruction("RUN")
    assert '--uid "${CHARGEGW_UID}"' in run and "useradd" in run
    # Everything the processes write belongs to that user, mode 0700.
    assert "chown chargegw:chargegw /data /run/chargegw" in run
    assert "chmod 0700 /data /run/chargegw" in run
    # The USER line comes after the install (pip runs as root) and before the entry point.
    assert DOCKERFILE.index("RUN pip install") < DOCKERFILE.index("USER ")
    assert DOCKERFILE.index("USER ") < DOCKERFILE.index("ENTRYPOINT")


def test_the_directories_the_configs_use_are_the_ones_the_image_owns() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    gw_env = dict(re.findall(r"^      (CHARGEGW_POOL__STATUS_BIND): (\S+)$", text, re.M))
    status = gw_env["CHARGEGW_POOL__STATUS_BIND"]
    assert os.path.dirname(status[len("ipc://") :]) == "/run/chargegw"
    cfg = load_config(str(ROOT / "config" / "docker.toml"), env={})
    assert cfg.data_dir == "/data"
    assert "ENV CHARGEGW_CONFIG=/etc/chargegw/chargegw.toml" in DOCKERFILE


def test_keys_stay_out_of_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("keys", "**/*.key_secret", "**/*.key", "**/*.pem", ".git"):
        assert pattern in ignored


def test_healthcheck_is_declared_with_bounds() -> None:
    hc = _instruction("HEALTHCHECK")
    assert "--timeout=" in hc and "--interval=" in hc and "--start-period=" in hc
    assert "chargegw status" in hc


def _health_script(cmdline: Path) -> str:
    script = _instruction("HEALTHCHECK").split("CMD", 1)[1].strip()
    script = script.replace("/proc/1/cmdline", shlex.quote(str(cmdline)))
    return script.replace(
        "chargegw status", f"{shlex.quote(sys.executable)} -m chargegw.cli status"
    )


def _run_health(tmp_path: Path, argv: list[str], env: dict[str, str]) -> int:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return subprocess.run(
        ["sh", "-c", _health_script(cmdline)], env=env, timeout=30, capture_output=True
    ).returncode


def test_healthcheck_command_tells_a_running_gateway_from_none(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "CHARGEGW_DATA_DIR": str(tmp_path / "data"),
        "CHARGEGW_LISTEN__0__PORT": "0",
        "CHARGEGW_LAUNCHER__MIN_WORKERS": "0",
    }
    gateway_argv = ["/usr/local/bin/python", "/usr/local/bin/chargegw", "gateway"]
    # A worker's container is healthy while it runs (its gateway reports on it).
    worker_argv = ["/usr/local/bin/python", "/usr/local/bin/chargegw", "worker"]
    assert _run_health(tmp_path, worker_argv, env) == 0
    # No gateway on the status socket: unhealthy (1, never docker's reserved 2).
    assert _run_health(tmp_path, gateway_argv, env) == 1
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargegw.cli", "gateway"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline()  # listening
        assert _run_health(tmp_path, gateway_argv, env) == 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    time.sleep(0.1)
    assert _run_health(tmp_path, gateway_argv, env) == 1
