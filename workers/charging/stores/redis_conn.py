"""The connection to Redis, shared by the charging store and the CDR store: the URL forms
(one server, `redis+sentinel://`, `redis+cluster://`), the redis-py client for each, the
errors that mean "unreachable", the call wrapper that turns them into StoreUnavailable
within the loop turn's budget, and the one write path: a `Batch` of commands packed in RESP
(hiredis), sent on a connection kept per server, one send per node, with WAIT for `replicas`
(per primary on a cluster) and MOVED/ASK followed (`RedisConn._send`). redis-py makes the
connections and keeps Sentinel's master and the cluster's slot map."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ..store import StoreUnavailable, spend_turn, turn_spent
from .common import Nowait

_Pack = Callable[[tuple[Any, ...]], bytes]
try:  # RESP packing in C (its stubs type the tuple's length wrong, hence the cast)
    import hiredis

    _pack = cast(_Pack, hiredis.pack_command)
except ImportError:  # pragma: no cover - depends on the install
    _pack = cast(_Pack, None)

T = TypeVar("T")

SENTINEL_SCHEME = "redis+sentinel://"
REDIRECTS = 5  # MOVED/ASK rounds followed for one pipeline (a slot moves once per step)


def _split(url: str, scheme: str) -> tuple[str | None, str, list[str]]:
    """A `scheme[:PASSWORD@]HOSTS/PATH...` URL's password, hosts and path parts."""
    if not url.startswith(scheme):
        raise ValueError(f"not a {scheme} URL")
    rest = url[len(scheme) :]
    password = None
    if "@" in rest:
        cred, rest = rest.rsplit("@", 1)
        password = cred.split(":", 1)[1] if ":" in cred else cred
    hosts, _, path = rest.partition("/")
    return password, hosts, [p for p in path.split("/") if p]


def _hosts(hosts: str, what: str) -> list[tuple[str, int]]:
    """`HOST:PORT[,HOST:PORT...]` (IPv6 in brackets) as (host, port) pairs."""
    nodes: list[tuple[str, int]] = []
    for h in hosts.split(","):
        host, sep, port = h.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad {what} address {h!r} (HOST:PORT)")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """`redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`: the Sentinels,
    the monitored master's name, the database and the data nodes' password. ValueError on
    anything else (a configuration error, named at start)."""
    password, hosts, parts = _split(url, SENTINEL_SCHEME)
    if not hosts or not parts or len(parts) > 2:
        raise ValueError(f"a Sentinel URL is {SENTINEL_SCHEME}HOST:PORT[,HOST:PORT...]/MASTER[/DB]")
    nodes = _hosts(hosts, "Sentinel")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"bad database number {parts[1]!r}")
    return nodes, parts[0], int(parts[1]) if len(parts) == 2 else 0, password


CLUSTER_SCHEME = "redis+cluster://"


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None]:
    """`redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...][/0]`: some nodes of the cluster
    (the client learns the others and the slot map from them) and the password. A Redis
    Cluster has database 0 only, so any other number is refused. ValueError on anything
    else (a configuration error, named at start)."""
    password, hosts, parts = _split(url, CLUSTER_SCHEME)
    if not hosts or len(parts) > 1:
        raise ValueError(f"a Redis Cluster URL is {CLUSTER_SCHEME}HOST:PORT[,HOST:PORT...][/0]")
    if parts and parts[0] != "0":
        raise ValueError(f"a Redis Cluster has database 0 only, not {parts[0]!r}")
    return _hosts(hosts, "Redis Cluster node"), password


def is_cluster(r: Any) -> bool:
    """Whether `r` is a Redis Cluster client (a batch splits by node, WAIT is per node);
    asked without making a `LazyCluster`'s client."""
    return isinstance(r, LazyCluster) or hasattr(r, "get_primaries")


class Batch:
    """Commands for one `RedisConn._send`, packed in RESP as they are queued (hiredis), each
    with the key that places it on a cluster (every command here names its key first;
    EVALSHA after the script and key count). It replaces redis-py's pipeline on the write
    path: redis-py's per-command packing, callbacks and dispatch cost more than the
    store's own work per CCR."""

    __slots__ = ("wire", "keys")

    def __init__(self) -> None:
        self.wire: list[bytes] = []
        self.keys: list[str] = []

    def __len__(self) -> int:
        return len(self.wire)

    def execute_command(self, *args: Any) -> None:
        """Queue one command (the name of redis-py's pipeline method, for `Script.queue`)."""
        self.wire.append(_pack(args))
        self.keys.append(args[3] if args[0] in ("EVALSHA", "EVAL") else args[1])

    def cmd(self, *args: Any) -> None:
        """Queue `NAME KEY ARGS...`."""
        self.wire.append(_pack(args))
        self.keys.append(args[1])

    def get(self, key: str) -> None:
        self.wire.append(_pack(("GET", key)))
        self.keys.append(key)

    def set(self, key: str, value: bytes | str, px: int | None = None) -> None:
        self.wire.append(_pack(("SET", key, value, "PX", px) if px else ("SET", key, value)))
        self.keys.append(key)


def client(url: str, timeout: float) -> Any:
    """A redis-py client that fails (no retries) after `timeout` instead of hanging.

    `redis+sentinel://` URLs (`parse_sentinel_url`) give a client of the master that the
    Sentinels name: after a failover its next connection goes to the promoted replica (the
    gap is StoreUnavailable, answered 3004, like any outage).

    `redis+cluster://` URLs (`parse_cluster_url`) give a RedisCluster client: it learns the
    slot map from the nodes named, sends each command to its slot's primary and splits a
    pipeline into one per node, sent together (one round trip, all nodes in parallel). It
    follows MOVED/ASK itself; a node that cannot be reached is StoreUnavailable."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise StoreUnavailable(
            "the redis backend needs the 'redis' package (pip install chargegw[redis])"
        ) from exc
    if _pack is None:  # pragma: no cover - depends on the install
        raise StoreUnavailable(
            "the redis backend needs the 'hiredis' package (pip install chargegw[redis])"
        )
    opts: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if url.startswith(SENTINEL_SCHEME):
        from redis.sentinel import Sentinel

        nodes, master, db, password = parse_sentinel_url(url)
        sentinel = Sentinel(
            nodes,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
            **opts,
        )
        return sentinel.master_for(master, db=db, password=password, **opts)
    if url.startswith(CLUSTER_SCHEME):
        nodes, password = parse_cluster_url(url)
        return LazyCluster(nodes, password, opts)
    return redis.Redis.from_url(url, **opts)


class LazyCluster:
    """A RedisCluster made on first use. RedisCluster reads the slot map from the nodes as
    it is made and raises when none answers, where the other clients connect on their first
    command: made here on first use, a cluster not up yet is StoreUnavailable for that call
    (3004, tried again on the next), as a single server not up yet is, instead of a worker
    that fails to start."""

    def __init__(self, nodes: list[tuple[str, int]], password: str | None, opts: dict[str, Any]):
        self._nodes, self._password, self._opts = nodes, password, opts
        self._c: Any = None

    def _client(self) -> Any:
        if self._c is None:
            import redis
            from redis.cluster import ClusterNode, RedisCluster

            opts = dict(self._opts)
            try:
                self._c = RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in self._nodes],
                    password=self._password,
                    retry=opts.pop("retry"),
                    require_full_coverage=True,
                    **opts,
                )
            except redis.exceptions.RedisClusterException as exc:  # no node answered
                raise redis.ConnectionError(str(exc)) from exc
        return self._c

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client(), name)

    def close(self) -> None:
        if self._c is not None:
            self._c.close()


def redis_errors() -> tuple[tuple[type[BaseException], ...], type[BaseException]]:
    """The errors that mean "server unreachable", and the one for "server still loading"."""
    import redis
    from redis import exceptions as e

    # A cluster that lost a primary answers CLUSTERDOWN (or TRYAGAIN during a move) until a
    # replica is promoted: the same gap as a Sentinel failover.
    down = (
        redis.ConnectionError,
        redis.TimeoutError,
        OSError,
        e.ClusterDownError,
        e.TryAgainError,
        e.SlotNotCoveredError,
    )
    return down, e.BusyLoadingError


class RedisConn(Nowait):
    """One Redis connection. `_errors` use up the loop turn's store budget when met
    (`spend_turn`); `_busy` only fail the call."""

    r: Any
    url: str
    p: str  # key prefix
    replicas: int = 0  # writes wait (WAIT) for this many replicas before they count
    replica_wait_ms: int = 100
    _errors: tuple[type[BaseException], ...]
    _busy: tuple[type[BaseException], ...] = ()
    _held: dict[int, tuple[Any, Any]]  # id(pool) -> (pool, the connection kept from it)
    _held_pid: int

    def _ready(self) -> None:
        """Checks made once before the first command (the charging store: its layout)."""

    def _call(self, fn: Callable[[], T]) -> T:
        """`fn()`, with connection errors as StoreUnavailable. On an event loop, one that
        fails uses up the turn's store budget (`spend_turn`): the turn's other requests get
        3004 at once instead of each waiting out `timeout` on an unreachable server."""
        if turn_spent():
            raise StoreUnavailable(f"redis {self.url}: unavailable in this loop turn")
        try:
            self._ready()
            return fn()
        except self._errors as exc:
            spend_turn()
            raise StoreUnavailable(f"redis {self.url}: {exc}") from exc
        except self._busy as exc:
            raise StoreUnavailable(f"redis {self.url}: {exc}") from exc

    def _pipe(self) -> Any:
        """A new redis-py pipeline (no transaction) for the admin reads and writes that need
        no acks (the write path is `Batch`/`_send`), made inside `_call`: a cluster's client
        is made on first use (`LazyCluster`), and one that cannot be is StoreUnavailable."""
        return self._call(lambda: self.r.pipeline(transaction=False))

    def _acks(self) -> list[tuple[Any, ...]]:
        """The commands that end a primary's share of a write batch, on its connection
        after its writes, so that its replies count only once the writes are held: WAIT
        for `replicas` (nothing without). The CDR store adds WAITAOF. `_follow` ends the
        share of each node a write was redirected to with the same commands."""
        return [("WAIT", self.replicas, self.replica_wait_ms)] if self.replicas else []

    def _check_ack(self, cmd: tuple[Any, ...], got: Any) -> None:
        """StoreUnavailable unless `got`, the reply to the `_acks` command `cmd`, says the
        writes before it are held."""
        self._check_waits([got])

    def _send(self, batch: Batch) -> list[Any]:
        """The replies to `batch`'s commands in order, errors as values, once its writes
        are held (`_acks`: WAIT for `replicas`, the CDR store's WAITAOF).

        One server (or Sentinel's master): the batch, then the acks, go out as one write on
        one connection. A cluster: the commands split by their key's primary, each node's
        share followed by the acks on the same connection (a WAIT counts its connection's
        writes, so a node whose replica lags holds up its own shards only, never the other
        nodes'); every share is written before any reply is read, so the nodes work in
        parallel. MOVED and ASK replies are followed here (`_follow`): each is sent again
        to the node it names with the acks after it there (redis-py's own redirects would
        send it alone, after the WAITs were answered: uncovered). A reply that means
        "unreachable" (`_errors`: CLUSTERDOWN, TRYAGAIN...) and a connection error are
        raised (3004; the client's retry is idempotent); an ack that falls short is
        StoreUnavailable (`_check_ack`)."""
        if not batch.wire:
            return []
        acks = self._acks()
        ack_wire = [_pack(a) for a in acks]
        held: list[tuple[tuple[Any, ...], Any]] = []  # (ack command, its reply)
        r = self.r
        n = len(batch)
        if not is_cluster(r):
            (got,) = self._exchange([(r, [*batch.wire, *ack_wire])])
            res = got[:n]
            held.extend(zip(acks, got[n:], strict=True))
        else:
            shares: dict[str, tuple[Any, list[int]]] = {}
            for i, k in enumerate(batch.keys):
                node = r.get_node_from_key(k)
                sh = shares.get(node.name)
                if sh is None:
                    sh = shares[node.name] = (node, [])
                sh[1].append(i)
            parts = [
                (r.get_redis_connection(node), [*(batch.wire[i] for i in at), *ack_wire])
                for node, at in shares.values()
            ]
            res = [None] * n
            for (_, at), got in zip(shares.values(), self._exchange(parts), strict=True):
                for i, x in zip(at, got, strict=False):
                    res[i] = x
                held.extend(zip(acks, got[len(at) :], strict=True))
            self._follow(batch, res, acks, ack_wire, held)
        for x in res:
            if isinstance(x, self._errors):
                raise x
        for cmd, x in held:
            self._check_ack(cmd, x)
        return res

    def _exchange(self, parts: list[tuple[Any, list[bytes]]]) -> list[list[Any]]:
        """For each (redis-py client, packed commands): the commands written as one send on
        this store's connection to that client's server (`_held`), every part before any
        reply is read, then each part's replies in order (hiredis), error replies as
        values. A connection that fails is closed (the next batch connects it again) and
        its error raised once the other parts' replies are read (their connections stay in
        step); on a cluster, the slot map is read again then (as redis-py does when a node
        cannot be connected to: a failover's promoted replica is found)."""
        from redis.exceptions import ResponseError

        conns: list[Any] = []
        out: list[list[Any]] = []
        err: BaseException | None = None
        sent = [False] * len(parts)
        for k, (client, wire) in enumerate(parts):
            conn = None
            try:
                conn = self._held_conn(client)
                conn.send_packed_command([b"".join(wire)], check_health=False)
                sent[k] = True
            except Exception as exc:  # not connected
                err = err or exc
                self._drop(client)
            conns.append(conn)
        for (client, wire), conn, ok in zip(parts, conns, sent, strict=True):
            got: list[Any] = []
            if ok:
                read = conn.read_response
                for _ in wire:
                    try:
                        got.append(read())
                    except ResponseError as e:
                        got.append(e)
                    except Exception as exc:
                        err = err or exc
                        self._drop(client)
                        break
            got.extend([err] * (len(wire) - len(got)))
            out.append(got)
        if err is not None:
            self._unreachable()
            raise err
        return out

    def _held_conn(self, client: Any) -> Any:
        """This store's own connection to `client`'s server, taken from its pool once and
        kept: the worker is one thread and a batch reads every reply it sends, so taking
        and giving back a pooled one per batch (a poll of the socket each time) buys
        nothing. One that fails is dropped (`_drop`): the next is taken from the pool,
        which connects it where the pool says (a Sentinel pool asks for the master then;
        a dropped connection reconnecting by itself would go back to the old address).
        After a fork the child takes its own."""
        held = getattr(self, "_held", None)
        pid = os.getpid()
        if held is None or getattr(self, "_held_pid", pid) != pid:
            held = self._held = {}
            self._held_pid = pid
        pool = client.connection_pool
        got = held.get(id(pool))
        if got is None or got[0] is not pool:
            got = held[id(pool)] = (pool, pool.get_connection())
        return got[1]

    def _drop(self, client: Any) -> None:
        """Close and give back the connection kept for `client` (it failed mid-batch: what
        it still has to read is unknown)."""
        got = getattr(self, "_held", {}).pop(id(client.connection_pool), None)
        if got is not None:
            pool, conn = got
            conn.disconnect()
            pool.release(conn)

    def _unreachable(self) -> None:
        """A node could not be connected to: a cluster's slot map is read again (a failure
        to do so leaves the old one, tried again at the next such error)."""
        r = self.r
        if not is_cluster(r):
            return
        try:  # (a read or write error too: the node may be gone, its slots elsewhere)
            r.nodes_manager.initialize()
        except Exception:  # noqa: BLE001 - no node answers: the batch fails anyway
            pass

    def _follow(
        self,
        batch: Batch,
        res: list[Any],
        acks: list[tuple[Any, ...]],
        ack_wire: list[bytes],
        held: list[tuple[tuple[Any, ...], Any]],
    ) -> None:
        """Send the commands of `batch` whose reply in `res` is MOVED or ASK to the node
        named (after ASKING for an ASK; a MOVED updates the slot map), each node's share
        followed by the acks, and put their replies in `res` (the acks' in `held`); again
        while a reply redirects (a slot that moved on meanwhile), `REDIRECTS` rounds at
        most (StoreUnavailable after: the slot is still moving, 3004)."""
        from redis.exceptions import AskError, MovedError

        r = self.r
        for _ in range(REDIRECTS):
            redirected = [i for i, x in enumerate(res) if isinstance(x, AskError)]
            if not redirected:
                return
            shares: dict[str, tuple[Any, list[bytes], list[int]]] = {}
            for i in redirected:
                e = res[i]
                node = self._redirect_node(e)
                sh = shares.get(node.name)
                if sh is None:
                    sh = shares[node.name] = (node, [], [])
                if not isinstance(e, MovedError):  # ASK: this command only, map unchanged
                    sh[1].append(_pack(("ASKING",)))
                    sh[2].append(-1)
                sh[1].append(batch.wire[i])
                sh[2].append(i)
            parts = [(r.get_redis_connection(node), [*wire, *ack_wire])
                     for node, wire, _ in shares.values()]  # fmt: skip
            for (_, _, at), got in zip(shares.values(), self._exchange(parts), strict=True):
                for j, x in zip(at, got, strict=False):
                    if j >= 0:
                        res[j] = x
                held.extend(zip(acks, got[len(at) :], strict=True))
        if any(isinstance(x, AskError) for x in res):
            raise StoreUnavailable(f"redis {self.url}: still redirected after {REDIRECTS} rounds")

    def _redirect_node(self, e: Any) -> Any:
        """The node a MOVED/ASK reply `e` names; a MOVED updates the client's slot map
        (`move_slot`, redis-py 6+; else the map is read again), a node not known yet is
        learnt from the cluster."""
        from redis.exceptions import MovedError

        r = self.r
        manager = r.nodes_manager
        if isinstance(e, MovedError):
            move = getattr(manager, "move_slot", None)
            if move is not None:
                move(e)
            else:  # pragma: no cover - redis-py 5
                manager.initialize()
        node = r.get_node(host=e.host, port=e.port)
        if node is None:
            manager.initialize()
            node = r.get_node(host=e.host, port=e.port)
        if node is None:
            raise StoreUnavailable(
                f"redis {self.url}: redirected to unknown node {e.host}:{e.port}"
            )
        return node

    def _check_waits(self, acks: list[Any]) -> None:
        """StoreUnavailable unless every WAIT saw `replicas` replicas acknowledge."""
        for acked in acks:
            if isinstance(acked, Exception) or int(acked) < self.replicas:
                raise StoreUnavailable(
                    f"redis {self.url}: {acked} of {self.replicas} replicas acknowledged"
                )

    def close(self) -> None:
        for pool, conn in getattr(self, "_held", {}).values():
            pool.release(conn)
        self._held = {}
        self.r.close()
