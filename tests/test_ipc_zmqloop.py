"""LoopSocket's drain (chargegw.ipc.zmqloop) against a scripted socket: what it reads goes
to its owner, even when a read it was told would succeed says EAGAIN."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import zmq

from chargegw.ipc.zmqloop import LoopSocket


class ScriptedSocket:
    """Says POLLIN while it holds messages (one more than it will give, then EAGAIN)."""

    def __init__(self, messages: list[list[bytes]], again_after: int) -> None:
        self.messages = [list(m) for m in messages]
        self.again_after = again_after  # recv calls before EAGAIN
        self.calls = 0
        self.more = False
        self.r, self.w = os.pipe()

    def fileno(self) -> int:
        return self.r

    def get(self, option: int) -> int:
        if option == zmq.EVENTS:
            return int(zmq.POLLIN) if self.messages else 0
        if option == zmq.RCVMORE:
            return int(self.more)
        raise AssertionError(option)

    def recv(self, flags: int = 0, copy: bool = True) -> Any:
        self.calls += 1
        if self.calls > self.again_after:
            raise zmq.Again()
        part = self.messages[0].pop(0)
        self.more = bool(self.messages[0])
        if not self.more:
            self.messages.pop(0)
        return part

    def close(self, linger: int = 0) -> None:
        os.close(self.r)
        os.close(self.w)


def test_messages_read_before_an_eagain_reach_the_owner() -> None:
    async def main() -> list[list[list[bytes]]]:
        sock = ScriptedSocket([[b"id1", b"a"], [b"id2", b"b"], [b"id3", b"c"]], again_after=4)
        got: list[list[list[bytes]]] = []
        ls = LoopSocket(asyncio.get_running_loop(), sock, got.append)  # type: ignore[arg-type]
        ls._readable()
        ls.close()
        return got

    # two whole messages were read, then the third's first read said EAGAIN: both delivered
    assert asyncio.run(main()) == [[[b"id1", b"a"], [b"id2", b"b"]]]


def test_a_drain_hands_over_every_waiting_message_in_one_batch() -> None:
    async def main() -> list[list[list[bytes]]]:
        sock = ScriptedSocket([[b"id", bytes([i])] for i in range(5)], again_after=1000)
        got: list[list[list[bytes]]] = []
        ls = LoopSocket(asyncio.get_running_loop(), sock, got.append)  # type: ignore[arg-type]
        ls._readable()
        ls.close()
        return got

    assert asyncio.run(main()) == [[[b"id", bytes([i])] for i in range(5)]]
