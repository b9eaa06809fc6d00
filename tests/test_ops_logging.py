"""Operator logging (chargegw.process): text and JSON lines with role and context, one line
per cause per interval under overload, no secrets in any line, and level changes that
apply at once."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from chargegw import process
from chargegw.config.schema import Logging
from chargegw.process import ContextAdapter, RepeatFilter, log_context, redact, set_level

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    base = logging.getLogger("chargegw")
    levels = (root.level, base.level)
    yield
    process.teardown_logging()
    process.set_role("")
    root.setLevel(levels[0])
    base.setLevel(levels[1])


def _setup(fmt: str = "text", interval: float = 5.0, level: str = "info") -> io.StringIO:
    buf = io.StringIO()
    settings = Logging(level=level, format=fmt, repeat_interval=interval)  # type: ignore[arg-type]
    process.setup_logging(level, settings, role="gateway", stream=buf)
    return buf


def _lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


# Formats ------------------------------------------------------------------------------


def test_text_line_has_role_logger_level_message_and_context() -> None:
    buf = _setup("text")
    log = logging.getLogger("chargegw.peer")
    log.warning(
        "CER from %s refused",
        "evil.example",
        extra=log_context(peer="evil.example", app=4, session_id=b"gw;1;2"),
    )
    (line,) = _lines(buf)
    assert f" gateway[{os.getpid()}] chargegw.peer WARNING CER from evil.example refused " in line
    assert line.endswith("[peer=evil.example app=4 session_id=gw;1;2]")


def test_text_line_escapes_controls_so_a_peer_cannot_forge_a_line() -> None:
    buf = _setup("text")
    forged = "x\n2030-01-01 00:00:00,000 gateway[1] chargegw.peer INFO all good"
    logging.getLogger("chargegw.peer").warning("bad Origin-Host %s", forged, extra={"peer": forged})
    lines = _lines(buf)
    assert len(lines) == 1 and "\\x0a2030" in lines[0]


def test_json_lines_carry_the_same_fields() -> None:
    buf = _setup("json")
    set_role = process.set_role
    set_role("worker:w1")
    log = ContextAdapter(logging.getLogger("chargegw.worker"), peer="pgw1.example", app=4)
    log.info("session %s opened", "s1", extra={"session_id": "pgw1;1;s1"})
    try:
        raise RuntimeError("store down")
    except RuntimeError:
        log.exception("commit failed")
    first, second = (orjson.loads(x) for x in _lines(buf))
    assert first["role"] == "worker:w1" and first["pid"] == os.getpid()
    assert first["logger"] == "chargegw.worker" and first["level"] == "info"
    assert first["msg"] == "session s1 opened"
    assert (first["peer"], first["app"], first["session_id"]) == ("pgw1.example", 4, "pgw1;1;s1")
    assert second["level"] == "error" and "RuntimeError: store down" in second["exc"]
    assert "session_id" not in second  # the adapter's context only, not the last call's


def test_auto_is_json_unless_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert process.resolve_format("auto", io.StringIO()) == "json"
    assert process.resolve_format("auto", Tty()) == "text"
    assert process.resolve_format("json", Tty()) == "json"
    assert process.resolve_format("text", io.StringIO()) == "text"


def test_a_long_session_id_is_cut() -> None:
    buf = _setup("json")
    logging.getLogger("chargegw.x").warning("m", extra={"session_id": "s" * 70000})
    doc = orjson.loads(_lines(buf)[0])
    assert len(doc["session_id"]) < 300


# Repeats ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _filtered(interval: float = 5.0) -> tuple[RepeatFilter, Clock, list[str], logging.Logger]:
    clock = Clock()
    out: list[str] = []
    fmt = process.TextFormatter()

    def write(record: logging.LogRecord) -> None:
        out.append(fmt.format(record))

    flt = RepeatFilter(interval, write, clock=clock)
    logger = logging.getLogger("chargegw.test.repeat")
    logger.propagate = False
    logger.handlers.clear()

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            write(record)

    h = ListHandler()
    h.addFilter(flt)
    logger.addHandler(h)
    logger.setLevel(logging.DEBUG)
    return flt, clock, out, logger


def test_overload_writes_one_line_per_cause_per_interval_with_the_count() -> None:
    flt, clock, out, log = _filtered()
    for i in range(10_000):  # 10,000 expired requests within one second
        clock.t += 0.0001
        log.warning("request %d expired", i)
    assert len(out) == 1 and out[0].endswith("request 0 expired")
    clock.t += 5.0
    log.warning("request %d expired", 10_000)
    assert len(out) == 2
    assert out[1].endswith("request 10000 expired (repeated 9999 times in 6s)")
    # Another cause (another template, another logger) has its own window.
    log.warning("worker %s dropped", "w1")
    logging.getLogger("chargegw.test.other").addHandler(log.handlers[0])
    logging.getLogger("chargegw.test.other").propagate = False
    logging.getLogger("chargegw.test.other").warning("request %d expired", 1)
    assert len(out) == 4


def test_a_count_is_written_when_the_cause_goes_quiet() -> None:
    flt, clock, out, log = _filtered()
    for i in range(50):
        log.error("store commit failed: %s", f"locked {i}")
    assert len(out) == 1
    clock.t += 6.0
    flt.sweep()  # the idle thread's call
    assert len(out) == 2 and out[1].endswith(
        "store commit failed: locked 49 (repeated 49 times in 6s)"
    )
    flt.sweep()
    assert len(out) == 2  # written once
    log.error("store commit failed: %s", "x")  # same window as the summary: counted
    flt.flush()  # at exit
    assert len(out) == 3 and "(repeated 1 times" in out[2]


def test_debug_and_interval_zero_pass_every_line() -> None:
    flt, clock, out, log = _filtered()
    for _ in range(5):
        log.debug("per request %d", 1)
    assert len(out) == 5
    flt.interval = 0
    for _ in range(5):
        log.warning("w")
    assert len(out) == 10


def test_repeat_memory_is_bounded() -> None:
    flt, clock, out, log = _filtered()
    flt._max = 16
    for i in range(1000):  # a caller that formats its own messages: every template differs
        log.warning(f"peer {i} misbehaved")
    assert len(flt._causes) <= 17
    assert len(out) <= 17


def test_setup_logging_filters_repeats_and_flushes_on_teardown() -> None:
    buf = _setup("json", interval=60.0)
    log = logging.getLogger("chargegw.gateway")
    for i in range(500):
        log.warning("request %d expired", i)
    assert len(_lines(buf)) == 1
    process.teardown_logging()
    last = orjson.loads(_lines(buf)[-1])
    assert last["repeated"] == 499 and "(repeated 499 times" in last["msg"]


# Secrets ------------------------------------------------------------------------------

PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----"
)
Z85_SECRET = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"


@pytest.mark.parametrize(
    "text, secret",
    [
        ("cannot connect to redis://:s3cr3tpw@10.0.0.5:6379/0", "s3cr3tpw"),
        ("url=redis://chargegw:hunter2@redis:6379", "hunter2"),
        ("rediss://user:p@ss@word@host:6380/1 refused", "p@ss@word"),
        ("redis://tokenonly@host:6379", "tokenonly"),
        ("store config password=Tr0ub4dor&3 ok", "Tr0ub4dor"),
        ("secret: 'letmein' in the environment", "letmein"),
        (f'secret-key = "{Z85_SECRET}"', Z85_SECRET),
        (f"curve secret {Z85_SECRET}", Z85_SECRET),
        (f"loaded key file:\n{PEM}\n", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw"),
        (PEM[:120], "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw"),  # cut before the END line
    ],
)
def test_redact_removes_secrets(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "***" in out


def test_redact_keeps_what_an_operator_needs() -> None:
    for text in [
        "pool.curve_secret_key: cannot read '/keys/gateway.key_secret': No such file",
        "worker w1 registered from tcp://10.0.0.7:40122 (key Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID)",
        "redis://redis:6379/0 up",
        "CER from pgw1.example (realm example): 2001",
    ]:
        assert redact(text) == text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_reaches_a_line_in_either_format(fmt: str, tmp_path: Path) -> None:
    import zmq.auth

    _, secret_file = zmq.auth.create_certificates(str(tmp_path), "gw")
    contents = Path(secret_file).read_text()
    secret = zmq.auth.load_certificate(secret_file)[1]
    assert secret is not None
    buf = _setup(fmt)
    log = logging.getLogger("chargegw.gateway")
    log.error("bad key file %s:\n%s", secret_file, contents)
    log.warning(
        "store at %s", "redis://:pw-in-url@redis:6379/0", extra={"peer": "redis://:ctx-pw@x"}
    )
    log.warning("tls key %s", PEM)
    try:
        raise ConnectionError("AUTH failed for redis://default:exc-pw@redis:6379")
    except ConnectionError:
        log.exception("store down")
    text = buf.getvalue()
    for leaked in (secret.decode(), "pw-in-url", "ctx-pw", "exc-pw", "MIIEvQIBADANBgkqhkiG9w0"):
        assert leaked not in text, leaked
    assert secret_file in text  # the path is kept: it is not the secret
    if fmt == "json":
        assert all(orjson.loads(x) for x in text.splitlines())


# Levels -------------------------------------------------------------------------------


def test_set_level_applies_at_once_to_every_chargegw_logger() -> None:
    _setup("text", level="warning")
    peer = logging.getLogger("chargegw.peer")
    own = logging.getLogger("chargegw.app.4")
    own.setLevel(logging.ERROR)  # a logger that set its own level follows too
    assert not peer.isEnabledFor(logging.INFO)  # fills the logger's enabled-for cache
    old = set_level("debug")
    assert old == logging.WARNING
    assert peer.isEnabledFor(logging.DEBUG) and own.isEnabledFor(logging.DEBUG)
    assert process.current_level() == "debug"
    set_level("error")
    assert not peer.isEnabledFor(logging.WARNING) and not own.isEnabledFor(logging.WARNING)
    with pytest.raises(ValueError):
        set_level("loud")


def test_logging_table_validates() -> None:
    from chargegw.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="logging.format"):
        load_config(None, env={"CHARGEGW_LOGGING__FORMAT": "xml"})
    with pytest.raises(ConfigError, match="logging.repeat_interval"):
        load_config(None, env={"CHARGEGW_LOGGING__REPEAT_INTERVAL": "-1"})
    c = load_config(None, env={"CHARGEGW_LOGGING__FORMAT": "json"})
    assert c.logging.format == "json"


# The command -----------------------------------------------------------------------------


def test_gateway_command_writes_json_lines_with_its_role(tmp_path: Path) -> None:
    """`chargegw gateway` with CHARGEGW_LOGGING__FORMAT=json: every stderr line it logs is
    JSON naming the gateway role."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "CHARGEGW_LOGGING__FORMAT": "json",
        "CHARGEGW_DATA_DIR": str(tmp_path),
        "CHARGEGW_LISTEN__0__PORT": "0",
        "CHARGEGW_LAUNCHER__MIN_WORKERS": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargegw.cli", "gateway"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline()  # the startup line: listening
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    docs = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    assert docs and all(d["role"] == "gateway" and d["pid"] == proc.pid for d in docs)
    assert any("stopping" in d["msg"] for d in docs)


def test_the_repeat_sweeper_is_stopped_and_joined_before_the_exit_flush() -> None:
    """A daemon thread writing to stderr while the interpreter finalises aborts the process
    (SIGABRT): the exit hook stops the sweeper and waits for it before its last write."""
    process.setup_logging("info", Logging(repeat_interval=0.1), stream=io.StringIO())
    sweeper = process._state["sweeper_thread"]
    assert sweeper.name == "chargegw-log-repeats" and sweeper.is_alive()
    process._flush_repeats()
    assert not sweeper.is_alive()
    process.teardown_logging()
