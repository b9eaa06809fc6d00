"""chargegw.peer: the Diameter base protocol and an asyncio Node to build applications on.

from chargegw.peer import Node, NodeConfig, PeerConfig, ListenConfig, TlsConfig
"""

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
from chargegw.peer.loop import run, uvloop_available
from chargegw.peer.node import Node, PeerInfo, RequestError, RequestTimeout

__all__ = [
    "AllowRule",
    "ListenConfig",
    "Node",
    "NodeConfig",
    "PeerConfig",
    "PeerInfo",
    "ProtocolError",
    "RequestError",
    "RequestTimeout",
    "RouteConfig",
    "TlsConfig",
    "VendorApp",
    "error_answer",
    "error_answer_bytes",
    "run",
    "uvloop_available",
]
