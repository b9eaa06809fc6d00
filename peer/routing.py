"""Request routing: Destination-Host, then Destination-Realm + application, then a default route.

Pure: it sees peers through a small protocol (name, realm, usable, outstanding, supports) and
returns a choice or the Result-Code explaining why there is none (3002 / 3003).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar, cast

from chargegw.codec.constants import ResultCode
from chargegw.codec.errors import DiameterError
from chargegw.peer.config import RouteConfig


class RoutablePeer(Protocol):
    name: str
    realm: str | None

    @property
    def outstanding(self) -> int: ...

    @property
    def usable(self) -> bool: ...

    def supports(self, app_id: int) -> bool: ...


# A selector picks one peer among usable candidates that support the application.
Selector = Callable[[Sequence[RoutablePeer]], RoutablePeer]
# The caller's own peer type (the Node's PeerInfo), so select() hands back what it was given.
P = TypeVar("P", bound=RoutablePeer)


def least_outstanding(candidates: Sequence[RoutablePeer]) -> RoutablePeer:
    """Default selector: fewest requests awaiting an answer (first listed wins ties)."""
    best = candidates[0]
    best_n = best.outstanding
    for peer in candidates[1:]:
        if peer.outstanding < best_n:
            best, best_n = peer, peer.outstanding
    return best


class RoutingError(DiameterError):
    """No peer can take the request: 3002 (no usable peer) or 3003 (realm not served)."""

    def __init__(self, result_code: int, message: str) -> None:
        super().__init__(result_code, message)


def _norm(name: str | None) -> str | None:
    return name.lower() if name else name


class RoutingTable:
    """Static routes plus the realms learned from peers' configs and CERs."""

    def __init__(
        self,
        routes: Iterable[RouteConfig] = (),
        default_route: Iterable[str] = (),
        selector: Selector = least_outstanding,
    ) -> None:
        self.selector = selector
        self.exact: dict[str, list[RouteConfig]] = {}
        self.suffix: list[tuple[str, RouteConfig]] = []  # longest suffix first
        for route in routes:
            realm = route.realm.lower()
            if realm.startswith("*."):
                realm = realm[1:]
            if realm.startswith("."):
                self.suffix.append((realm, route))
            else:
                self.exact.setdefault(realm, []).append(route)
        self.suffix.sort(key=lambda item: -len(item[0]))
        self.default_route = [n.lower() for n in default_route]

    def _realm_routes(self, realm: str) -> list[RouteConfig]:
        found = self.exact.get(realm)
        if found:
            return found
        for suffix, _route in self.suffix:
            if realm.endswith(suffix):
                return [r for s, r in self.suffix if s == suffix]
        return []

    def select(
        self,
        peers: Mapping[str, P],
        app_id: int,
        dest_host: str | None = None,
        dest_realm: str | None = None,
        exclude: Iterable[str] = (),
    ) -> P:
        """Pick a peer for a request; raises RoutingError(3002/3003).

        `peers` is keyed by lower-cased Origin-Host. `exclude` drops candidates (failover,
        Route-Record loop avoidance).
        """
        excluded = {n.lower() for n in exclude} if exclude else ()
        host = _norm(dest_host)
        if host is not None and host not in excluded:
            peer = peers.get(host)
            if peer is not None and peer.usable and peer.supports(app_id):
                return peer
        realm = _norm(dest_realm)
        known_realm = False
        if realm is not None:
            names, known_realm = self._realm_names(peers, app_id, realm)
            choice = self._choose(peers, names, app_id, excluded)
            if choice is not None:
                return choice
        if self.default_route:
            choice = self._choose(peers, self.default_route, app_id, excluded)
            if choice is not None:
                return choice
            raise RoutingError(
                ResultCode.DIAMETER_UNABLE_TO_DELIVER, "no usable peer on the default route"
            )
        if realm is None and host is None:
            raise RoutingError(
                ResultCode.DIAMETER_UNABLE_TO_DELIVER, "no Destination-Realm and no default route"
            )
        if realm is not None and not known_realm:
            raise RoutingError(
                ResultCode.DIAMETER_REALM_NOT_SERVED, f"realm {dest_realm!r} not served"
            )
        raise RoutingError(
            ResultCode.DIAMETER_UNABLE_TO_DELIVER,
            f"no usable peer for application {app_id} in {dest_realm!r}",
        )

    def _realm_names(
        self, peers: Mapping[str, RoutablePeer], app_id: int, realm: str
    ) -> tuple[list[str], bool]:
        """The server names for a (lower-cased) realm and application, in route order: the
        routes' peers (the application's own routes, else the realm's catch-all ones), then
        the peers whose own realm it is; and whether the realm is known at all."""
        names: list[str] = []
        known_realm = False
        routes = self._realm_routes(realm)
        if routes:
            known_realm = True
            specific = [r for r in routes if r.app_id == app_id]
            for route in specific or [r for r in routes if r.app_id is None]:
                names.extend(n.lower() for n in route.peers)
        # Peers whose own realm is the destination realm are implicit routes.
        for name, peer in peers.items():
            if peer.realm is not None and peer.realm.lower() == realm:
                known_realm = True
                if name not in names:
                    names.append(name)
        return names, known_realm

    def servers(
        self,
        peers: Mapping[str, RoutablePeer],
        app_id: int,
        dest_host: str | None = None,
        dest_realm: str | None = None,
    ) -> list[str]:
        """What a redirect agent names instead of forwarding (RFC 6733 6.1.7): every server
        the table holds for the request, usable from here or not (the client connects to
        them itself): a Destination-Host that is one of them first, then the realm's, else
        the default route. RoutingError(3003) for a realm not served, 3002 for none."""
        realm = _norm(dest_realm)
        names: list[str] = []
        known_realm = False
        if realm is not None:
            names, known_realm = self._realm_names(peers, app_id, realm)
        if not names:
            names = list(self.default_route)
        host = _norm(dest_host)
        if host is not None and (host in names or host in peers):
            names = [host, *(n for n in names if n != host)]
        if names:
            return names
        if realm is not None and not known_realm:
            raise RoutingError(
                ResultCode.DIAMETER_REALM_NOT_SERVED, f"realm {dest_realm!r} not served"
            )
        raise RoutingError(
            ResultCode.DIAMETER_UNABLE_TO_DELIVER, f"no server for application {app_id}"
        )

    def _choose(
        self,
        peers: Mapping[str, P],
        names: Iterable[str],
        app_id: int,
        excluded: Iterable[str],
    ) -> P | None:
        candidates: list[P] = []
        for name in names:
            if name in excluded:
                continue
            peer = peers.get(name)
            if peer is not None and peer.usable and peer.supports(app_id):
                candidates.append(peer)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        return cast(P, self.selector(candidates))  # a selector returns one of the candidates
