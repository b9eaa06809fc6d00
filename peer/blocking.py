"""A blocking facade over the asyncio Node, for scripts and threaded code (python-diameter's
style): the Node's event loop runs in a background thread, `send_request(msg, timeout)`
blocks the calling thread until the answer, and handlers may be plain functions.

    with BlockingNode(config) as node:
        node.wait_open("server.example.com")
        cca = node.send_request(ccr, timeout=5.0)

A plain (sync) handler runs in a thread pool, never on the loop thread, so it may block
(a database, a lock, even `send_request` to another peer) without stalling the connections;
an `async def` handler runs on the loop as with Node. Either kind answers as Node's does:
return the answer (or None and call `send_answer` later, from any thread); raise
ProtocolError for that Result-Code; any other exception answers 5012.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from chargegw.codec import Message
from chargegw.peer.config import NodeConfig
from chargegw.peer.loop import new_event_loop
from chargegw.peer.node import Answer, Handler, Node, PeerInfo
from chargegw.peer.session_id import SessionIdGenerator

__all__ = ["BlockingNode"]

T = TypeVar("T")

# Beyond a request's own timeout (the Node enforces that): a bound on waiting for the loop.
_GRACE = 5.0


class BlockingNode:
    """A Node run by a background thread; every method may be called from any other thread."""

    def __init__(
        self,
        config: NodeConfig | Node,
        *,
        handler_threads: int = 16,
        use_uvloop: bool | None = None,
    ) -> None:
        self.node = config if isinstance(config, Node) else Node(config)
        self.session_ids = SessionIdGenerator(self.node.config.origin_host)
        self._handler_threads = handler_threads
        self._use_uvloop = use_uvloop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_threads: set[int] = set()
        self._lock = threading.Lock()  # start/stop

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> BlockingNode:
        """Start the loop thread and the Node (listeners, connections to configured peers)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("BlockingNode already started")
            loop = new_event_loop(self._use_uvloop)
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self._handler_threads,
                thread_name_prefix="chargegw-handler",
                initializer=lambda: self._pool_threads.add(threading.get_ident()),
            )
            ready = threading.Event()

            def main() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._loop = loop
            self._thread = threading.Thread(target=main, name="chargegw-node", daemon=True)
            self._thread.start()
            ready.wait()
            try:
                self._call(self.node.start(), timeout)
            except BaseException:
                self._teardown()
                raise
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Drain what is in flight, DPR the peers, close; then end the loop thread."""
        self._not_from_inside("stop()")
        with self._lock:
            if self._thread is None:
                return
            try:
                self._call(self.node.stop(timeout=timeout), timeout + _GRACE)
                self._call(_cancel_the_rest(), _GRACE)
            finally:
                self._teardown()

    def _teardown(self) -> None:
        loop, thread, pool = self._loop, self._thread, self._pool
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_GRACE)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if loop is not None and not loop.is_running():
            loop.close()
        self._loop = self._thread = self._pool = None
        self._pool_threads.clear()

    def __enter__(self) -> BlockingNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- requests and answers --------------------------------------------------------------------

    def send_request(
        self, msg: Message, timeout: float | None = None, peer: str | None = None
    ) -> Message:
        """Send a request and block until its answer (Node.request's routing and errors).

        Raises RequestTimeout when no answer comes within `timeout` (default: the config's
        request_timeout), RequestError when it cannot be delivered.
        """
        self._not_from_inside("send_request()", pool_ok=True)
        limit = self.node.config.request_timeout if timeout is None else timeout
        return self._call(self.node.request(msg, peer=peer, timeout=timeout), limit + _GRACE)

    def send_answer(self, peer_name: str, answer: Message | bytes, *, cache: bool = True) -> bool:
        """Send the answer of a handler that returned None. False if the peer is gone."""
        return self._on_loop(self.node.send_answer, peer_name, answer, cache=cache)

    def wait_open(self, name: str, timeout: float = 10.0) -> PeerInfo:
        """Block until the named peer is open (CER/CEA done)."""
        self._not_from_inside("wait_open()", pool_ok=True)
        return self._call(self.node.wait_open(name, timeout), timeout + _GRACE)

    def session_id(self, optional: str | None = None) -> str:
        """A new RFC 6733 8.8 Session-Id for this node's Origin-Host."""
        return self.session_ids.next(optional)

    # -- handlers --------------------------------------------------------------------------------

    def add_handler(self, app_id: int, handler: Handler, command: int | None = None) -> None:
        """Answer requests of `app_id` (one command, or all): see Node.add_handler.

        A plain function runs in the handler thread pool; an `async def` one on the loop.
        """
        if _is_async(handler):
            target = handler
        else:
            target = self._off_loop(handler)
        self._on_loop(self.node.add_handler, app_id, target, command)

    def remove_handler(self, app_id: int, command: int | None = None) -> None:
        self._on_loop(self.node.remove_handler, app_id, command)

    def _off_loop(self, handler: Handler) -> Callable[[Message, PeerInfo], Any]:
        async def run_in_pool(msg: Message, peer: PeerInfo) -> Answer:
            loop = asyncio.get_running_loop()
            res: Any = await loop.run_in_executor(self._pool, handler, msg, peer)
            if inspect.isawaitable(res):  # a plain function that returned a coroutine
                res = await res
            return res  # type: ignore[no-any-return]

        run_in_pool.__qualname__ = getattr(handler, "__qualname__", "handler")
        return run_in_pool

    # -- the node's state ------------------------------------------------------------------------

    @property
    def config(self) -> NodeConfig:
        return self.node.config

    @property
    def listen_addresses(self) -> list[Any]:
        return self._on_loop(lambda: list(self.node.listen_addresses))

    def peers(self) -> dict[str, dict[str, Any]]:
        """A snapshot of the peer table, as `PeerInfo.to_dict()` rows by name."""
        return self._on_loop(lambda: {n: p.to_dict() for n, p in self.node.peers.items()})

    def stats(self) -> dict[str, Any]:
        """`Node.stats()`: counts, rates over the last interval and latency percentiles, per
        peer and per (application, command), as a plain dict."""
        return self._on_loop(self.node.stats)

    def update_config(self, new: NodeConfig) -> None:
        self._on_loop(self.node.update_config, new)

    # -- crossing into the loop thread -----------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise RuntimeError("BlockingNode is not running (call start())")
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            if fut.done():  # the coroutine's own TimeoutError (RequestTimeout): pass it on
                return fut.result()
            fut.cancel()
            raise TimeoutError(f"no result from the node's loop within {timeout} s") from None

    def _on_loop(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Call fn on the loop thread (or directly while there is none) and return its value."""
        loop = self._loop
        if loop is None or not loop.is_running() or self._in_loop_thread():
            return fn(*args, **kw)

        async def call() -> T:
            return fn(*args, **kw)

        return self._call(call(), _GRACE)

    def _in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _not_from_inside(self, what: str, pool_ok: bool = False) -> None:
        if self._in_loop_thread():
            raise RuntimeError(f"{what} would block the node's own loop; await the Node instead")
        if not pool_ok and threading.get_ident() in self._pool_threads:
            raise RuntimeError(f"{what} from a handler would wait for that handler to end")


async def _cancel_the_rest() -> None:
    """What the stopped Node left on the loop (none, normally): cancelled, not leaked."""
    me = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not me]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


def _is_async(handler: Any) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    )
