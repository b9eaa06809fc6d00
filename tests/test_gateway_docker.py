"""docker-compose.yml and the Dockerfile: valid for docker-compose, and their environment
makes a valid chargegw config for each service (no container engine is needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from chargegw.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_is_valid() -> None:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose)")
    out = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    full = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert sorted(full.stdout.split()) == ["gateway", "redis", "worker"]


def _service_env(text: str, service: str) -> dict[str, str]:
    """The `environment:` mapping of one service, read from the compose file's text."""
    block = re.search(rf"^  {service}:\n((?:    .*\n|\n)+)", text, re.M)
    assert block, service
    env = re.search(r"^    environment:\n((?:      .*\n)+)", block.group(1), re.M)
    assert env, service
    out = {}
    for line in env.group(1).splitlines():
        k, _, v = line.strip().partition(":")
        out[k.strip()] = v.strip().strip('"')
    return out


def test_compose_environment_makes_a_valid_config_for_each_service() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    baked = str(ROOT / "config" / "docker.toml")
    gw = load_config(baked, env=_service_env(text, "gateway"))
    assert gw.pool_endpoints() == ["tcp://0.0.0.0:5555"]
    assert [(x.address, x.port) for x in gw.listen] == [("0.0.0.0", 3868)]
    worker = load_config(baked, env=_service_env(text, "worker"))
    assert worker.worker_gateways() == ["tcp://gateway:5555"]
    assert worker.data_path == gw.data_path == "/data"
    # the workers' charging state is on the compose file's Redis service
    stores = {a.app_id: a.config.get("store", {}) for a in worker.applications}
    for app_id in (4, 3, 16777302):
        assert stores[app_id].get("backend") == "redis", stores
        assert stores[app_id].get("url") == "redis://redis:6379/0"
    # The tcp pool is CURVE: each service mounts its own keys directory at /keys.
    assert gw.pool.curve_secret_key == "/keys/gateway.key_secret"
    assert gw.pool.curve_workers == "/keys/workers"
    assert gw.pool.status_bind.startswith("ipc://") and "/data/" not in gw.pool.status_bind
    assert worker.worker.curve_secret_key == "/keys/worker.key_secret"
    assert worker.worker.curve_server_key == "/keys/gateway.key"
    assert "./keys/gateway:/keys:ro" in text and "./keys/worker:/keys:ro" in text


def test_dockerfile_installs_the_package_and_bakes_the_config() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "pip install" in text and "config/docker.toml" in text
    assert 'ENTRYPOINT ["chargegw"]' in text
    # the baked config keeps the charging state in Redis: the image needs the client
    install = next(line for line in text.splitlines() if "pip install" in line)
    extras = install.split("[", 1)[1].split("]", 1)[0].split(",")
    assert "redis" in extras, install
