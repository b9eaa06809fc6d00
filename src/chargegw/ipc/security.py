"""Who may talk on the gateway <-> worker pool, shared by both sides (no gateway import).

- tcp:// endpoints use ZeroMQ CURVE: the gateway's ROUTER is the CURVE server and admits,
  through a ZAP handler, only the worker public keys in its allowlist directory; workers
  are CURVE clients that know the gateway's public key. Without keys a tcp:// endpoint
  refuses to start.
- ipc:// endpoints stay keyless: the socket file is mode 0600 in a directory of mode 0700,
  so only the gateway's own user can connect.
- Every pool socket has a maximum inbound message size, derived from the Diameter
  message limit plus the envelope: one huge frame drops that connection instead of
  growing memory.
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import zmq

# Room for the pool envelope around one Diameter message (ids, peer name, deadline,
# msgpack headers) and for small control messages batched with it.
ENVELOPE = 16 * 1024
STATUS_QUERY_MAX = 4096
ZAP_DOMAIN = "chargegw-pool"  # inbound limit on the status socket (queries are a few bytes)

# Server-initiated commands workers may send out (RFC 6733 RAR/ASR, TS 29.219 SNR).
RAR, ASR, SNR = 258, 274, 8388636
DEFAULT_OUT_COMMANDS = frozenset({RAR, ASR, SNR})


class PoolKeyError(OSError):
    """CURVE keys missing or unreadable; the message names the config keys to set. An
    OSError, so that the commands report it like any other failure to bind."""


def frame_limit(max_message_length: int) -> int:
    """The largest pool frame either side accepts (ZMQ_MAXMSGSIZE)."""
    return max_message_length + ENVELOPE


@dataclass(frozen=True, slots=True)
class ServerKeys:
    public: bytes  # z85
    secret: bytes
    allowed_dir: str  # directory of admitted worker public keys (*.key)


@dataclass(frozen=True, slots=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


def _load(path: str, what: str, *, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path:
        raise PoolKeyError(f"{what} is not set (`chargegw keys generate` writes the key files)")
    try:
        public, sec = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise PoolKeyError(f"{what}: cannot read {path!r}: {exc}") from None
    if secret and not sec:
        raise PoolKeyError(f"{what}: {path!r} holds no secret key (use the .key_secret file)")
    return public, sec


def server_keys(secret_key: str, workers_dir: str) -> ServerKeys:
    """The gateway's keys (pool.curve_secret_key, pool.curve_workers); PoolKeyError."""
    public, sec = _load(secret_key, "pool.curve_secret_key", secret=True)
    if not workers_dir:
        raise PoolKeyError(
            "pool.curve_workers is not set: the directory of admitted worker public keys"
        )
    if not os.path.isdir(workers_dir):
        raise PoolKeyError(f"pool.curve_workers: {workers_dir!r} is not a directory")
    assert sec is not None
    return ServerKeys(public, sec, workers_dir)


def client_keys(secret_key: str, server_key: str) -> ClientKeys:
    """A worker's keys (worker.curve_secret_key, worker.curve_server_key); PoolKeyError."""
    public, sec = _load(secret_key, "worker.curve_secret_key", secret=True)
    server_public, _ = _load(server_key, "worker.curve_server_key", secret=False)
    assert sec is not None
    return ClientKeys(public, sec, server_public)


def needs_curve(endpoints: list[str]) -> bool:
    return any(ep.startswith("tcp://") for ep in endpoints)


def allowed_keys(directory: str) -> set[bytes]:
    """The z85 public keys of every *.key file in `directory`."""
    import zmq.auth

    return set(zmq.auth.load_certificates(directory))


def start_authenticator(ctx: zmq.Context, keys: ServerKeys) -> object:
    """A ZAP handler on `ctx` admitting only the allowlisted CURVE keys (one per context)."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain=ZAP_DOMAIN, location=keys.allowed_dir)
    return auth


def curve_server(sock: zmq.Socket, keys: ServerKeys) -> None:
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())


def curve_client(sock: zmq.Socket, keys: ClientKeys) -> None:
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


# ipc:// ---------------------------------------------------------------------------------


def ipc_path(endpoint: str) -> str | None:
    """The socket file of an ipc:// endpoint (None for the abstract namespace)."""
    path = endpoint[len("ipc://") :]
    return None if path.startswith("@") else path


def private_dir(d: str) -> None:
    """Create `d` with mode 0700, or make an existing one of ours 0700. A shared sticky
    directory (/tmp) is left as it is; one owned by someone else is refused."""
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.stat(d)
    if st.st_mode & stat.S_ISVTX and st.st_mode & stat.S_IWOTH:
        return  # /tmp-like: the socket's own mode 0600 protects it
    if st.st_uid != os.getuid():
        raise OSError(f"{d} belongs to uid {st.st_uid}, not to this user: refusing to bind there")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(d, 0o700)


@contextmanager
def private_bind() -> Iterator[None]:
    """Sockets created inside get mode 0600 from the start (no window before a chmod)."""
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


def after_ipc_bind(endpoint: str) -> None:
    path = ipc_path(endpoint)
    if path and os.path.exists(path):
        os.chmod(path, 0o600)


def status_endpoint(config: object) -> str:
    """Where `chargegw status` asks: pool.status_bind, or ipc://<data_dir>/status.ipc."""
    from chargegw.config.schema import default_ipc_endpoint

    bind = config.pool.status_bind  # type: ignore[attr-defined]
    return bind or default_ipc_endpoint(config.data_path, "status.ipc")  # type: ignore[attr-defined]


# Key generation ------------------------------------------------------------------------


def generate(directory: str, workers: list[str], *, force: bool = False) -> list[Path]:
    """Write the CURVE key pairs a deployment needs, laid out so each side mounts only
    its own directory:

        DIR/gateway/gateway.key_secret   pool.curve_secret_key
        DIR/gateway/workers/NAME.key     pool.curve_workers (the allowlist)
        DIR/worker/NAME.key_secret       worker.curve_secret_key (one per worker name)
        DIR/worker/gateway.key           worker.curve_server_key

    Secret files are mode 0600, directories 0700. Existing keys are kept unless `force`
    (re-running is harmless); returns the files written."""
    import zmq.auth

    root = Path(directory)
    gw_dir, allow_dir, wk_dir = root / "gateway", root / "gateway" / "workers", root / "worker"
    written: list[Path] = []
    old = os.umask(0o077)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (gw_dir, allow_dir, wk_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            for name, sec_dir, pub_dirs in [
                ("gateway", gw_dir, [gw_dir, wk_dir]),
                *((w, wk_dir, [wk_dir, allow_dir]) for w in workers),
            ]:
                secret = sec_dir / f"{name}.key_secret"
                if secret.exists() and not force:
                    public, _ = zmq.auth.load_certificate(str(secret))
                else:
                    pub_file, sec_file = zmq.auth.create_certificates(tmp, name)
                    os.chmod(sec_file, 0o600)
                    os.replace(sec_file, secret)
                    written.append(secret)
                    public, _ = zmq.auth.load_certificate(str(secret))
                for d in pub_dirs:
                    target = d / f"{name}.key"
                    if target.exists() and not force:
                        continue
                    _write_public(target, public)
                    written.append(target)
    finally:
        os.umask(old)
    return written


def _write_public(path: Path, public: bytes) -> None:
    text = (
        "#   ZeroMQ CURVE Public Certificate (chargegw)\n"
        "metadata\n"
        "curve\n"
        f'    public-key = "{public.decode("ascii")}"\n'
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


__all__ = [
    "DEFAULT_OUT_COMMANDS",
    "ClientKeys",
    "PoolKeyError",
    "ServerKeys",
    "client_keys",
    "frame_limit",
    "generate",
    "server_keys",
    "status_endpoint",
]


def bind(sock: zmq.Socket, ep: str) -> None:
    """Bind; an ipc:// socket file is mode 0600 from the start, in a 0700 directory."""
    if not ep.startswith("ipc://"):
        sock.bind(ep)
        return
    _prepare_ipc(ep)
    with private_bind():
        sock.bind(ep)
    after_ipc_bind(ep)


def _prepare_ipc(endpoint: str) -> None:
    """Create the socket's directory, and refuse a path another live process is bound to
    (ZeroMQ would silently take it over, cutting that gateway off from its workers)."""
    path = endpoint[len("ipc://") :]
    if path.startswith("@"):
        return  # abstract namespace
    d = os.path.dirname(path)
    if d:
        private_dir(d)
    # A socket closed a moment ago (a restart in the same process) may still accept for a
    # few milliseconds: only one that keeps accepting is taken as live.
    for _ in range(10):
        if not os.path.exists(path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            return  # stale file of a process that is gone: ZeroMQ replaces it
        finally:
            probe.close()
        time.sleep(0.05)
    raise OSError(f"{endpoint} is in use by another running gateway")
