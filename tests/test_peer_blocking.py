"""BlockingNode on loopback: a Node's loop in a thread, blocking send_request, plain handlers
run off the loop thread (so one that blocks stalls nothing), timeouts, 5012 for a handler
that raises, ProtocolError codes, deferred answers from another thread, and clean stops."""

from __future__ import annotations

import asyncio
import runpy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chargegw.codec import Message
from chargegw.codec.constants import CMD_CCR
from chargegw.peer import (
    BlockingNode,
    ListenConfig,
    Node,
    NodeConfig,
    PeerConfig,
    ProtocolError,
    RequestError,
    RequestTimeout,
)
from chargegw.peer.testing import make_ccr, result_code

REALM = "test.example"
SERVER = "server.test.example"
CLIENT = "client.test.example"

pytestmark = pytest.mark.timeout(60)


def cca(req: Message, rc: int = 2001) -> Message:
    return req.answer(
        rc,
        origin_host=SERVER,
        origin_realm=REALM,
        auth_application_id=4,
        cc_request_type=req.cc_request_type,
        cc_request_number=req.cc_request_number,
    )


def server_config() -> NodeConfig:
    return NodeConfig(
        origin_host=SERVER, origin_realm=REALM, auth_apps=[4], listen=[ListenConfig(port=0)]
    )


def client_config(port: int) -> NodeConfig:
    return NodeConfig(
        origin_host=CLIENT,
        origin_realm=REALM,
        auth_apps=[4],
        peers=[PeerConfig(SERVER, port=port, realm=REALM)],
        reconnect_min=0.1,
    )


def ccr(client: BlockingNode, number: int = 0) -> Message:
    return make_ccr(CLIENT, REALM, REALM, end_to_end=0, session_id=client.session_id(),
                    number=number)  # fmt: skip


@pytest.fixture
def pair() -> Iterator[Callable[[Callable[..., Any]], tuple[BlockingNode, BlockingNode]]]:
    """Two BlockingNodes: a server with the given CCR handler and a client connected to it."""
    started: list[BlockingNode] = []

    def make(handler: Callable[..., Any]) -> tuple[BlockingNode, BlockingNode]:
        server = BlockingNode(server_config())
        server.add_handler(4, handler, CMD_CCR)
        started.append(server.start())
        client = BlockingNode(client_config(server.listen_addresses[0][2]))
        started.append(client.start())
        client.wait_open(SERVER)
        return server, client

    yield make
    for node in reversed(started):
        node.stop(timeout=2)
        assert not node.running


def test_send_request_blocks_until_the_answer(pair: Any) -> None:
    loop_threads: list[threading.Thread] = []

    def handler(req: Message, peer: Any) -> Message:
        loop_threads.append(threading.current_thread())
        return cca(req)

    server, client = pair(handler)
    req = ccr(client)
    ans = client.send_request(req, timeout=5)
    assert result_code(ans) == 2001
    assert ans.session_id == req.session_id and ans.hop_by_hop == req.hop_by_hop
    assert ans.session_id.startswith(f"{CLIENT};")
    # the plain handler ran in the pool, not on the server's loop thread
    assert loop_threads and loop_threads[0] is not server._thread
    assert loop_threads[0].name.startswith("chargegw-handler")
    assert client.peers()[SERVER]["state"] == "I-Open"


def test_a_blocking_handler_does_not_stall_the_others(pair: Any) -> None:
    # Request 1's handler waits for request 2's. Run on the loop thread, this would deadlock.
    second_seen = threading.Event()

    def handler(req: Message, peer: Any) -> Message:
        if req.cc_request_number == 1:
            assert second_seen.wait(10)
        else:
            second_seen.set()
        return cca(req)

    _, client = pair(handler)
    answers: dict[int, int] = {}

    def send(n: int) -> None:
        answers[n] = result_code(client.send_request(ccr(client, n), timeout=10))

    first = threading.Thread(target=send, args=(1,))
    first.start()
    time.sleep(0.1)  # request 1 is in its handler, blocked
    send(2)
    first.join(15)
    assert answers == {1: 2001, 2: 2001}


def test_many_threads_share_one_blocking_node(pair: Any) -> None:
    _, client = pair(lambda req, peer: cca(req))
    results: list[tuple[str, str | None]] = []

    def worker() -> None:
        for n in range(25):
            req = ccr(client, n)
            ans = client.send_request(req, timeout=10)
            results.append((req.session_id, ans.session_id))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 200
    assert all(sent == got for sent, got in results)
    assert len({sent for sent, _ in results}) == 200


def test_timeout_raises_and_the_node_carries_on(pair: Any) -> None:
    release = threading.Event()

    def handler(req: Message, peer: Any) -> Message:
        if req.cc_request_number == 1:
            release.wait(5)  # answers far too late
        return cca(req)

    _, client = pair(handler)
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout) as err:
        client.send_request(ccr(client, 1), timeout=0.3)
    assert 0.25 <= time.monotonic() - t0 < 3.0
    assert err.value.result_code == 3002
    release.set()
    assert result_code(client.send_request(ccr(client, 2), timeout=5)) == 2001


def test_a_raising_handler_answers_5012_and_protocol_errors_their_code(pair: Any) -> None:
    def handler(req: Message, peer: Any) -> Message:
        if req.cc_request_number == 1:
            raise RuntimeError("bug in the application")
        if req.cc_request_number == 2:
            raise ProtocolError(5030, "who?")
        return cca(req)

    server, client = pair(handler)
    a = client.send_request(ccr(client, 1), timeout=5)
    assert result_code(a) == 5012 and not a.is_error
    assert a.origin_host == SERVER  # built by the Node's error path
    b = client.send_request(ccr(client, 2), timeout=5)
    assert result_code(b) == 5030 and b.error_message == "who?"
    assert result_code(client.send_request(ccr(client, 3), timeout=5)) == 2001
    assert server.node.stats["handler_errors"] == 1


def test_deferred_answer_from_another_thread(pair: Any) -> None:
    server_ref: list[BlockingNode] = []

    def handler(req: Message, peer: Any) -> None:
        answer = cca(req)
        threading.Timer(0.05, server_ref[0].send_answer, args=(peer.name, answer)).start()
        return None  # answered later

    server, client = pair(handler)
    server_ref.append(server)
    assert result_code(client.send_request(ccr(client), timeout=5)) == 2001


def test_async_handlers_still_run_on_the_loop(pair: Any) -> None:
    seen: list[bool] = []

    async def handler(req: Message, peer: Any) -> Message:
        seen.append(threading.current_thread().name == "chargegw-node")
        await asyncio.sleep(0)
        return cca(req)

    _, client = pair(handler)
    assert result_code(client.send_request(ccr(client), timeout=5)) == 2001
    assert seen == [True]


def test_a_blocking_client_against_an_asyncio_node() -> None:
    """The server is a plain asyncio Node on its own loop (the usual async API)."""
    port: list[int] = []
    up, down = threading.Event(), threading.Event()

    async def serve() -> None:
        node = Node(server_config())
        node.add_handler(4, lambda req, peer: cca(req), CMD_CCR)
        async with node:
            port.append(node.listen_addresses[0][2])
            up.set()
            while not down.is_set():
                await asyncio.sleep(0.02)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert up.wait(10)
        with BlockingNode(client_config(port[0])) as client:
            client.wait_open(SERVER, timeout=10)
            assert result_code(client.send_request(ccr(client), timeout=5)) == 2001
            with pytest.raises(RequestError) as err:
                client.send_request(ccr(client), peer="nobody.example")
            assert err.value.result_code == 3002
        assert not client.running
    finally:
        down.set()
        thread.join(15)


def test_lifecycle_errors() -> None:
    node = BlockingNode(server_config())
    with pytest.raises(RuntimeError, match="not running"):
        node.send_request(make_ccr(CLIENT, REALM, REALM), timeout=1)
    node.stop()  # not started: nothing to do
    with node:
        with pytest.raises(RuntimeError, match="already started"):
            node.start()
        assert node.running and node.listen_addresses
    assert not node.running
    node.start()  # again: a fresh loop thread, listening anew
    try:
        assert node.running and node.listen_addresses
    finally:
        node.stop()
    assert not node.running


def test_stop_from_a_handler_is_refused(pair: Any) -> None:
    errors: list[str] = []
    ref: list[BlockingNode] = []

    def handler(req: Message, peer: Any) -> Message:
        try:
            ref[0].stop()
        except RuntimeError as exc:
            errors.append(str(exc))
        return cca(req)

    server, client = pair(handler)
    ref.append(server)
    assert result_code(client.send_request(ccr(client), timeout=5)) == 2001
    assert errors and "from a handler" in errors[0]


def test_the_blocking_client_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """examples/blocking_client.py against examples/server.py's handler, in one process."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    server_mod = runpy.run_path(str(examples / "server.py"))
    client_mod = runpy.run_path(str(examples / "blocking_client.py"))
    config = NodeConfig(
        origin_host=server_mod["HOST"],
        origin_realm=server_mod["REALM"],
        auth_apps=[4],
        listen=[ListenConfig(port=0)],
    )
    with BlockingNode(config) as server:
        server.add_handler(4, server_mod["on_ccr"], CMD_CCR)  # a plain function: in the pool
        client_mod["main"](server.listen_addresses[0][2])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"CCR {kind} -> 2001, granted Granted-Service-Unit(CC-Total-Octets=1000000)"
        for kind in (1, 2, 3)
    ]
