"""Process set-up shared by every long-running command (`run`, `gateway`, `worker`):
logging, the event loop, stop signals, watching the parent, the exit statuses the
launcher reads, and the start of the memory housekeeping (`chargegw.memory`) that keeps a
process's heap from ratcheting up. Both the front end and the workers import it; it imports
neither.

Logging (`setup_logging`) writes one line per record to stderr: plain text, or JSON lines
(orjson) for a log collector. Every line names the process role (gateway, worker id), the
logger, the level and the message, plus the peer, application and Session-Id a caller
passes (`extra=log_context(...)` or `ContextAdapter`). Two filters sit on the handler, so
they hold for every logger and cannot be bypassed by a caller:

- `RepeatFilter`: one line per cause (logger, level, message template) per interval, then
  "(repeated N times in Ts)": overload never writes a line per request;
- redaction (`redact`): URL passwords, `password=`/`secret=` values, CURVE secret keys and
  PEM private keys never reach a line, in either format.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO, TypeVar

import orjson

from chargegw.memory import MemoryKeeper, malloc_tuning_wanted, tune_gc, tune_malloc
from chargegw.peer import loop as peer_loop

T = TypeVar("T")

EX_CONFIG = 78  # a worker's exit status when an application cannot be loaded or set up
EX_TEMPFAIL = 75  # set-up failed for a reason that may pass (a store not up yet): restart later

log = logging.getLogger("chargegw.process")


# Logging --------------------------------------------------------------------------------

LEVELS = ("debug", "info", "warning", "error")
# Record attributes a caller may set through `extra=` (see `log_context`): written as
# fields of a JSON line, and as "[peer=... app=... session_id=...]" after a text line.
CONTEXT_FIELDS = ("peer", "app", "session_id")
_CONTEXT_MAX = 200  # characters of one context value (a Session-Id is the peer's to choose)
_ROOT = "chargegw"


class LoggingSettings(Protocol):
    """The [logging] table (chargegw.config.schema.Logging), as far as set-up reads it."""

    @property
    def format(self) -> str: ...

    @property
    def repeat_interval(self) -> float: ...


_state: dict[str, Any] = {"role": "", "handler": None, "repeat": None}


def set_role(role: str) -> None:
    """Name this process in every line from now on: "gateway", "worker:<id>", ...
    (the worker learns its id after set-up; the runtime calls this once it has it)."""
    _state["role"] = role


def log_context(
    *, peer: str | None = None, app: int | str | None = None, session_id: Any = None
) -> dict[str, Any]:
    """The `extra=` for a record about one peer, application or session; None is left out:
    `log.warning("no worker for %s", what, extra=log_context(peer=p, session_id=sid))`."""
    ctx = {"peer": peer, "app": app, "session_id": session_id}
    return {k: v for k, v in ctx.items() if v is not None}


class ContextAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to a peer, application or session: every record it makes carries
    that context, merged with (and overridden by) a call's own `extra=`."""

    def __init__(self, logger: logging.Logger, **context: Any) -> None:
        super().__init__(logger, log_context(**context))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = kwargs.get("extra")
        kwargs["extra"] = {**(self.extra or {}), **extra} if extra else self.extra
        return msg, kwargs


# Redaction ------------------------------------------------------------------------------

_Z85 = r"0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#"
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys (a TLS key file's contents), to the END line or the end of the text.
    (
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.S
        ),
        r"-----BEGIN \1PRIVATE KEY----- *** -----END \1PRIVATE KEY-----",
    ),
    # A URL's password: redis://user:pw@host -> redis://user:***@host (the last @ ends it).
    (
        re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s:@/]*):([^\s/]*)@"),
        r"\1\2:***@",
    ),
    # A URL with a bare token for userinfo (redis://token@host).
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s:@/]+)@"), r"\1***@"),
    # password=..., secret: ..., token=... (not curve_secret_key: a path, not a secret).
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)(['\"]?)"
            r"(?!\*\*\*)[^\s'\",;&]+"
        ),
        r"\1\2\3***",
    ),
    # A Z85 key (40 characters) that follows "secret": a CURVE secret key or its file.
    (
        re.compile(rf"(?i)(secret[^\n]{{0,40}}?)(?<![{_Z85}])[{_Z85}]{{40}}(?![{_Z85}])"),
        r"\1***",
    ),
)


def redact(text: str) -> str:
    """`text` without the secrets a log line must never carry (see the module docstring)."""
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


# Formatters -----------------------------------------------------------------------------

# C0/C1 controls and Unicode line breaks, escaped in text lines: a Session-Id or an
# Origin-Host with a newline in it must not forge a second log line.
_CONTROLS = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
    if c != 0x09
}


def _context_value(value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value)
    return text if len(text) <= _CONTEXT_MAX else text[:_CONTEXT_MAX] + "..."


def _message(record: logging.LogRecord) -> str:
    msg = record.getMessage()
    repeated = getattr(record, "repeated", 0)
    if repeated:
        msg += f" (repeated {repeated} times in {getattr(record, 'repeat_window', 0.0):.0f}s)"
    return msg


def _role() -> str:
    return str(_state["role"] or "chargegw")


class TextFormatter(logging.Formatter):
    """`<time> <role>[<pid>] <logger> <LEVEL> <message> [peer=.. app=.. session_id=..]`, one
    line per record (a traceback follows on its own lines), controls escaped, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{self.formatTime(record)} {_role()}[{record.process}] {record.name} "
            f"{record.levelname} {_message(record)}"
        )
        ctx = [
            f"{k}={_context_value(v)}"
            for k in CONTEXT_FIELDS
            if (v := getattr(record, k, None)) is not None
        ]
        if ctx:
            line += f" [{' '.join(ctx)}]"
        line = line.translate(_CONTROLS)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (orjson): ts, level, logger, role, pid, msg, the context
    fields a record carries, `repeated`/`repeat_window_s`, and `exc` (the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "role": _role(),
            "pid": record.process,
            "msg": redact(_message(record)),
        }
        for k in CONTEXT_FIELDS:
            v = getattr(record, k, None)
            if v is not None:
                cv = _context_value(v)
                doc[k] = redact(cv) if isinstance(cv, str) else cv
        repeated = getattr(record, "repeated", 0)
        if repeated:
            doc["repeated"] = repeated
            doc["repeat_window_s"] = round(getattr(record, "repeat_window", 0.0), 3)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = redact(record.exc_text)
        if record.stack_info:
            doc["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(doc, default=str).decode()


# Rate-limited repeats -------------------------------------------------------------------


@dataclass(slots=True)
class _Cause:
    start: float  # when this cause's current window began
    suppressed: int = 0
    last: logging.LogRecord | None = None  # the latest suppressed record (for the summary)


class RepeatFilter(logging.Filter):
    """One line per cause per `interval` seconds. A cause is (logger, level, message
    template), so "request %d expired" from one place is one cause whatever its arguments.
    The first record of a window is written; later ones in the window are counted; when
    the window ends the count is written once, as the latest suppressed record with
    "(repeated N times in Ts)", and a new window starts. A window ends on the next record of
    any cause, on `sweep()` (a daemon thread calls it while the process is idle) or on
    `flush()` at exit. DEBUG records pass untouched: an operator who asks for debug gets
    everything. `max_causes` bounds the memory (beyond it, causes of one logger and level
    share one entry)."""

    def __init__(
        self,
        interval: float,
        emit: Callable[[logging.LogRecord], object] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_causes: int = 1024,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.emit = emit  # writes a summary record (the handler's `handle`)
        self._clock = clock
        self._max = max_causes
        self._causes: dict[tuple[str, int, str], _Cause] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.interval <= 0 or record.levelno < logging.INFO:
            return True
        if getattr(record, "_summary", False):
            return True
        now = self._clock()
        msg = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, record.levelno, msg)
        with self._lock:
            cause = self._causes.get(key)
            if cause is not None and now - cause.start >= self.interval:
                # The window is over: this record is the window's line, and carries the count.
                if cause.suppressed:
                    record.repeated = cause.suppressed
                    record.repeat_window = now - cause.start
                del self._causes[key]
                cause = None
            if cause is None and key not in self._causes and len(self._causes) >= self._max:
                key = (record.name, record.levelno, "")  # overflow: one cause per logger/level
                cause = self._causes.get(key)
            passed = cause is None
            if cause is None:
                self._causes[key] = _Cause(now)
            else:
                cause.suppressed += 1
                cause.last = record
            out = self._sweep(now) if now >= self._next_sweep else []  # other causes
        for summary in out:
            self._write(summary)
        return passed

    def sweep(self, now: float | None = None) -> None:
        """Write the count of every cause whose window has ended (for the idle thread)."""
        now = self._clock() if now is None else now
        with self._lock:
            out = self._sweep(now)
        for summary in out:
            self._write(summary)

    def flush(self) -> None:
        """Write every pending count now (at exit)."""
        now = self._clock()
        with self._lock:
            out = [self._summary(c, now) for c in self._causes.values() if c.suppressed]
            self._causes.clear()
        for summary in out:
            self._write(summary)

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        self._next_sweep = now + self.interval / 4
        out = []
        for key, cause in list(self._causes.items()):
            if now - cause.start < self.interval:
                continue
            if cause.suppressed:
                out.append(self._summary(cause, now))
                self._causes[key] = _Cause(now)  # the summary was this window's line
            else:
                del self._causes[key]
        return out

    @staticmethod
    def _summary(cause: _Cause, now: float) -> logging.LogRecord:
        assert cause.last is not None
        rec = logging.makeLogRecord(cause.last.__dict__)
        rec.exc_info = rec.exc_text = rec.stack_info = None  # the first line had the traceback
        rec.created = time.time()
        rec.msecs = (rec.created % 1) * 1000
        rec.repeated = cause.suppressed
        rec.repeat_window = now - cause.start
        rec._summary = True
        return rec

    def _write(self, record: logging.LogRecord) -> None:
        if self.emit is not None:
            self.emit(record)


def _sweeper(flt: RepeatFilter, stop: threading.Event) -> None:
    while not stop.wait(max(flt.interval / 2, 0.05)):
        flt.sweep()


# Set-up ---------------------------------------------------------------------------------


def resolve_format(fmt: str, stream: TextIO) -> str:
    """The format to write: "auto" is json unless `stream` is a terminal (a person)."""
    if fmt == "auto":
        try:
            return "text" if stream.isatty() else "json"
        except (AttributeError, ValueError):
            return "json"
    return "json" if fmt == "json" else "text"


def setup_logging(
    level: str,
    settings: LoggingSettings | None = None,
    *,
    role: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every record to `stream` (stderr) in the configured format, through the repeat
    and redaction filters; set the level of chargegw's loggers. Calling it again replaces
    the handler it installed before (nothing else on the root logger is touched)."""
    stream = sys.stderr if stream is None else stream
    fmt = resolve_format(getattr(settings, "format", "text"), stream)
    interval = float(getattr(settings, "repeat_interval", 5.0))
    if role is not None:
        set_role(role)
    root = logging.getLogger()
    _teardown()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    repeat = RepeatFilter(interval, handler.handle)
    handler.addFilter(repeat)
    handler._chargegw = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    _state.update(handler=handler, repeat=repeat)
    if interval > 0:
        stop = threading.Event()
        thread = threading.Thread(
            target=_sweeper, args=(repeat, stop), name="chargegw-log-repeats", daemon=True
        )
        thread.start()
        _state["sweeper"] = stop
        _state["sweeper_thread"] = thread
    set_level(level)
    return handler


def _stop_sweeper() -> None:
    """Stop the repeat sweeper and wait for it: a daemon thread caught in the middle of a
    write to stderr when the interpreter finalises makes it abort (SIGABRT, "could not
    acquire lock for <stderr> at interpreter shutdown"), as `chargegw run` once did on
    SIGTERM in the test suite."""
    stop = _state.pop("sweeper", None)
    thread = _state.pop("sweeper_thread", None)
    if stop is not None:
        stop.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join(2.0)


def _teardown() -> None:
    root = logging.getLogger()
    _stop_sweeper()
    for h in list(root.handlers):
        if getattr(h, "_chargegw", False):
            repeat = _state.get("repeat")
            if repeat is not None:
                repeat.flush()
            root.removeHandler(h)
    _state.update(handler=None, repeat=None)


def teardown_logging() -> None:
    """Undo `setup_logging` (pending repeat counts are written first)."""
    _teardown()


@atexit.register
def _flush_repeats() -> None:
    _stop_sweeper()  # before the last write, and before the interpreter finalises
    repeat = _state.get("repeat")
    if repeat is not None:
        repeat.flush()


def set_level(level: str | int) -> int:
    """Apply `level` at once to every chargegw logger and the root logger (third-party
    warnings follow it too); return the previous level of the "chargegw" logger. SIGHUP's
    reload calls it with the new `logging.level`."""
    new = level if isinstance(level, int) else getattr(logging, level.upper(), None)
    if not isinstance(new, int):
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    base = logging.getLogger(_ROOT)
    old = base.level
    logging.getLogger().setLevel(new)
    base.setLevel(new)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            name.startswith(_ROOT + ".")
            and isinstance(logger, logging.Logger)
            and logger.level != logging.NOTSET
        ):
            logger.setLevel(new)  # one a module set for itself follows as well
    return old


def current_level() -> str:
    return logging.getLevelName(logging.getLogger(_ROOT).getEffectiveLevel()).lower()


__all__ = [
    "CONTEXT_FIELDS",
    "ContextAdapter",
    "JsonFormatter",
    "RepeatFilter",
    "TextFormatter",
    "current_level",
    "log_context",
    "redact",
    "set_level",
    "set_role",
    "setup_logging",
    "teardown_logging",
]


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run on the peer layer's loop choice (uvloop when installed, unless CHARGEGW_UVLOOP=0),
    with the memory housekeeping (`chargegw.memory.MemoryKeeper`) beside it: every long-running command
    (gateway, launcher, worker, relay) comes through here."""

    if malloc_tuning_wanted():
        tune_malloc()
    tune_gc()  # after the imports and a worker's application set-up (run_worker)

    async def main() -> T:
        keeper = MemoryKeeper.from_env(_role())
        task = asyncio.get_running_loop().create_task(keeper.run(), name="chargegw-memory")
        try:
            return await coro
        finally:
            task.cancel()

    return peer_loop.run(main())


def install_signals(stop: asyncio.Event, reload: Callable[[], None] | None = None) -> None:
    """SIGTERM and SIGINT set `stop`; SIGHUP calls `reload` when given."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


def watch_parent(parent_pid: int, stop: asyncio.Event, *, every: float = 1.0) -> None:
    """Set `stop` once `parent_pid` is no longer this process's parent (the launcher
    crashed or was killed): a child must not outlive the supervisor that owns it."""
    loop = asyncio.get_running_loop()

    def check() -> None:
        if os.getppid() != parent_pid:
            log.warning("parent %d is gone, stopping", parent_pid)
            stop.set()
        else:
            loop.call_later(every, check)

    loop.call_later(every, check)
