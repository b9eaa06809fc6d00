"""chargegw.peer: the Diameter base protocol and an asyncio Node to build applications on.

from chargegw.peer import Node, NodeConfig, PeerConfig, ListenConfig, TlsConfig
from chargegw.peer import BlockingNode          # the same Node, for threaded code
from chargegw.peer import SessionIdGenerator, peer_from_uri   # RFC 6733 8.8 ids, aaa:// URIs

The pure modules (fsm, watchdog, capabilities, pending, routing, dupcache, connection) load
no asyncio, ssl or socket; so this package imports the asyncio Node (and the loop helpers)
only when one of those names is first asked for (PEP 562 `__getattr__`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chargegw.peer.config import (
    AllowRule,
    ListenConfig,
    NodeConfig,
    PeerConfig,
    RouteConfig,
    TlsConfig,
    VendorApp,
)
from chargegw.peer.errors import ProtocolError, error_answer, error_answer_bytes
from chargegw.peer.session_id import SessionIdGenerator
from chargegw.peer.uri import DiameterURI, DiameterURIError, parse_diameter_uri, peer_from_uri

if TYPE_CHECKING:
    from chargegw.peer.blocking import BlockingNode
    from chargegw.peer.loop import run, uvloop_available
    from chargegw.peer.node import Node, PeerInfo, RequestError, RequestTimeout

_LAZY = {
    "BlockingNode": "chargegw.peer.blocking",
    "Node": "chargegw.peer.node",
    "PeerInfo": "chargegw.peer.node",
    "RequestError": "chargegw.peer.node",
    "RequestTimeout": "chargegw.peer.node",
    "run": "chargegw.peer.loop",
    "uvloop_available": "chargegw.peer.loop",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chargegw.peer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AllowRule",
    "BlockingNode",
    "DiameterURI",
    "DiameterURIError",
    "ListenConfig",
    "Node",
    "NodeConfig",
    "PeerConfig",
    "PeerInfo",
    "ProtocolError",
    "RequestError",
    "RequestTimeout",
    "RouteConfig",
    "SessionIdGenerator",
    "TlsConfig",
    "VendorApp",
    "error_answer",
    "error_answer_bytes",
    "parse_diameter_uri",
    "peer_from_uri",
    "run",
    "uvloop_available",
]
