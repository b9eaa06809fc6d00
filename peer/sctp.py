"""SCTP transport (RFC 6733 2.1.1) through pysctp, as an asyncio transport.

One-to-one ("TCP-style") sockets, so the association behaves like a stream connection and the
same `Connection` protocol (and the codec's FrameReader) does the framing, exactly as on TCP:
only this adapter is SCTP-specific. What it adds:

* every Diameter message is sent as its own SCTP message with PPID 46 (RFC 6733 / IANA);
* several streams (negotiated with SCTP_INITMSG); base-protocol messages (application 0) go
  on stream 0, the others are spread over streams 1..n-1 by end-to-end id, so one session's
  request and answer share a stream and unrelated messages avoid head-of-line blocking;
* multi-homing: extra local addresses are bound with sctp_bindx, extra peer addresses are
  given to sctp_connectx;
* SCTP_NODELAY on by default: without it a request/answer exchange waits on the delayed-SACK
  and Nagle-style bundling timers and runs hundreds of times slower (the go-diameter trap).

This kernel has no SCTP, so the tests skip with the reason; `sctp_unavailable_reason()` says
why it cannot be used on a machine.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("chargegw.peer")

DIAMETER_PPID = 46
_BLOCKED = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR)
_READ_SIZE = 256 * 1024


def sctp_unavailable_reason() -> str | None:
    """None when SCTP sockets work here; otherwise why not (the kernel first: without
    kernel SCTP, installing pysctp would not help)."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError as exc:
        return f"the kernel has no SCTP: socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) failed: {exc}"
    s.close()
    try:
        import sctp  # noqa: F401
    except ImportError:
        return "pysctp is not installed (pip install 'chargegw[sctp]')"
    return None


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _configure(sk: Any, streams: int, nodelay: bool) -> None:
    sk.initparams.num_ostreams = streams
    sk.initparams.max_instreams = streams
    sk.initparams.flush()
    sk.set_nodelay(bool(nodelay))


def pick_stream(data: bytes, streams: int) -> int:
    """Stream 0 for application 0 (CER/DWR/DPR...), else spread by end-to-end id."""
    if streams <= 1 or len(data) < 20:
        return 0
    app, e2e = struct.unpack_from(">I4xI", data, 8)
    if app == 0:
        return 0
    return 1 + e2e % (streams - 1)


class SctpTransport(asyncio.Transport):
    """An asyncio transport over a connected pysctp one-to-one socket."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sk: Any,
        protocol: asyncio.Protocol,
        *,
        streams: int = 8,
        ppid: int = DIAMETER_PPID,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sk = sk
        self._sock: socket.socket = sk.sock()
        self._sock.setblocking(False)
        self._fd = self._sock.fileno()
        self._protocol = protocol
        self._streams = max(1, streams)
        self._ppid = ppid
        self._queue: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._high = 4 << 20
        self._low = 1 << 20
        self._writing_paused = False
        self._reading = True
        self._closing = False
        self._closed = False
        self._extra = {
            "socket": self._sock,
            "sctp_socket": sk,
            "peername": _safe(self._sock.getpeername),
            "sockname": _safe(self._sock.getsockname),
        }
        loop.add_reader(self._fd, self._read_ready)
        loop.call_soon(protocol.connection_made, self)

    # -- BaseTransport -----------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peer_addresses":
            return _safe(self._sk.getpaddrs)
        if name == "local_addresses":
            return _safe(self._sk.getladdrs)
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._closed

    def close(self) -> None:
        if self._closing or self._closed:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._queue:
            self._finish(None)

    def abort(self) -> None:
        if self._closed:
            return
        try:  # SO_LINGER 0: the association is ABORTed rather than shut down
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._queue.clear()
        self._finish(None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # -- reading -----------------------------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        if self._reading and not self._closed:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing and not self._closed:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)

    def _read_ready(self) -> None:
        try:
            data = self._sock.recv(_READ_SIZE)
        except OSError as exc:
            if exc.errno in _BLOCKED:
                return
            self._finish(exc)
            return
        if not data:
            self._loop.remove_reader(self._fd)
            keep = self._protocol.eof_received()
            if not keep:
                self.close()
            return
        self._protocol.data_received(data)

    # -- writing -----------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """One call = one Diameter message = one SCTP message."""
        if self._closing or self._closed:
            return
        data = bytes(data)
        if not self._queue and self._send(data):
            return
        if not self._queue:
            self._loop.add_writer(self._fd, self._write_ready)
        self._queue.append(data)
        self._buffered += len(data)
        self._check_high()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def _send(self, data: bytes) -> bool:
        """True when sent; False when the socket is full."""
        try:
            self._sk.sctp_send(data, ppid=self._ppid, stream=pick_stream(data, self._streams))
            return True
        except OSError as exc:
            if exc.errno in _BLOCKED:
                return False
            self._finish(exc)
            return True

    def _write_ready(self) -> None:
        queue = self._queue
        while queue:
            data = queue[0]
            if not self._send(data):
                break
            queue.popleft()
            self._buffered -= len(data)
            if self._closed:
                return
        if not queue:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._finish(None)
        if self._writing_paused and self._buffered <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _check_high(self) -> None:
        if not self._writing_paused and self._buffered > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = 4 << 20 if high is None else high
        self._low = self._high // 4 if low is None else low
        self._check_high()

    def _finish(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        try:
            self._sock.close()
        except OSError:
            pass
        self._loop.call_soon(self._protocol.connection_lost, exc)


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OSError:
        return None


async def open_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    *,
    peer_addresses: Iterable[str] = (),
    local_addresses: Iterable[str] = (),
    streams: int = 8,
    nodelay: bool = True,
    timeout: float = 5.0,
) -> tuple[SctpTransport, Any]:
    reason = sctp_unavailable_reason()
    if reason is not None:
        raise ConnectionError(reason)
    import sctp

    sk = sctp.sctpsocket_tcp(_family(host))
    try:
        _configure(sk, streams, nodelay)
        local = list(local_addresses)
        if local:
            sk.bindx([(a, 0) for a in local])
        sock = sk.sock()
        sock.setblocking(False)
        targets = [(host, port)] + [(a, port) for a in peer_addresses]
        try:
            if len(targets) > 1:
                sk.connectx(targets)
            else:
                sock.connect(targets[0])
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EINPROGRESS:
                raise
        fut: asyncio.Future[None] = loop.create_future()

        def _writable() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_writer(sock.fileno(), _writable)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            loop.remove_writer(sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(
                err, f"SCTP connect to {host}:{port} failed: {errno.errorcode.get(err, err)}"
            )
    except BaseException:
        try:
            sk.close()
        except Exception:
            pass
        raise
    protocol = protocol_factory()
    transport = SctpTransport(loop, sk, protocol, streams=streams)
    await asyncio.sleep(0)  # connection_made runs
    return transport, protocol


class SctpServer:
    """Listening SCTP socket(s); the shape the Node expects of asyncio's Server."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sk: Any,
        factory: Callable[[], asyncio.Protocol],
        streams: int,
        nodelay: bool,
    ) -> None:
        self._loop = loop
        self._sk = sk
        self._sock: socket.socket = sk.sock()
        self._factory = factory
        self._streams = streams
        self._nodelay = nodelay
        self._closed = asyncio.Event()
        self.sockets = [self._sock]
        loop.add_reader(self._sock.fileno(), self._accept_ready)

    def _accept_ready(self) -> None:
        import sctp

        for _ in range(64):
            try:
                csock, _addr = self._sock.accept()
            except OSError as exc:
                if exc.errno not in _BLOCKED:
                    log.warning("SCTP accept failed: %s", exc)
                return
            try:
                csk = sctp.sctpsocket_tcp(csock.family, csock)
                csk.set_nodelay(self._nodelay)
                SctpTransport(self._loop, csk, self._factory(), streams=self._streams)
            except Exception as exc:
                log.warning("SCTP accept setup failed: %s", exc)
                csock.close()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()


async def start_server(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    *,
    extra_addresses: Iterable[str] = (),
    streams: int = 8,
    nodelay: bool = True,
    backlog: int = 128,
) -> SctpServer:
    reason = sctp_unavailable_reason()
    if reason is not None:
        raise OSError(errno.EPROTONOSUPPORT, reason)
    import sctp

    sk = sctp.sctpsocket_tcp(_family(host))
    try:
        _configure(sk, streams, nodelay)
        sock = sk.sock()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound_port = sock.getsockname()[1]
        extra = list(extra_addresses)
        if extra:
            sk.bindx([(a, bound_port) for a in extra])
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sk.close()
        raise
    return SctpServer(loop, sk, protocol_factory, streams, nodelay)
