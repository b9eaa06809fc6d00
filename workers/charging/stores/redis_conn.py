"""The connection to Redis, shared by the charging store and the CDR store: the URL forms
(one server, `redis+sentinel://`, `redis+cluster://`), the redis-py client for each, the
errors that mean "unreachable", and the call wrapper that turns them into StoreUnavailable
within the loop turn's budget, plus WAIT for `replicas` (per primary on a cluster)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..store import StoreUnavailable, spend_turn, turn_spent
from .common import Nowait

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
    """Whether `r` is a Redis Cluster client (its pipelines split by node, WAIT is per node);
    asked without making a `LazyCluster`'s client."""
    return isinstance(r, LazyCluster) or hasattr(r, "get_primaries")


def _queued(pipe: Any) -> list[Any] | None:
    """A cluster pipeline's queued commands (each with `args` and `options`, in order):
    redis-py keeps them in `_execution_strategy.command_queue` (6+) or `command_stack` (5).
    None where neither is found."""
    strategy = getattr(pipe, "_execution_strategy", None)
    queue = getattr(strategy, "command_queue", None)
    if queue is None:
        queue = getattr(pipe, "command_stack", None)
    return None if queue is None else list(queue)


def pipeline_nodes(r: Any, pipe: Any) -> list[Any]:
    """The primaries a cluster pipeline's queued commands go to (every command this store
    queues names its key first; EVALSHA after the script and key count); where the queue
    is not found (`_queued`), every primary."""
    queue = _queued(pipe)
    if queue is None:
        return list(r.get_primaries())
    found: dict[str, Any] = {}
    for c in queue:
        args = c.args
        key = args[3] if str(args[0]).upper() in ("EVALSHA", "EVAL") else args[1]
        node = r.get_node_from_key(key)
        found.setdefault(node.name, node)
    return list(found.values())


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
        """A new pipeline (no transaction), made inside `_call`: a cluster's client is made
        on first use (`LazyCluster`), and one that cannot be is StoreUnavailable."""
        return self._call(lambda: self.r.pipeline(transaction=False))

    def _queue_waits(self, pipe: Any) -> int:
        """Queue the WAITs of `replicas`: how many. On a cluster, one to each primary the
        pipeline writes to (after that node's commands, on the same connection), never to
        the others: a WAIT counts the connection's own writes, so one sent to a primary
        whose replica lags would hold up the shards of every other node as well. A write
        redirected by MOVED/ASK during a slot migration is not covered by these: `_send`
        sends it again with a WAIT of its own."""
        if not self.replicas:
            return 0
        if not is_cluster(self.r):
            pipe.execute_command("WAIT", self.replicas, self.replica_wait_ms)
            return 1
        nodes = pipeline_nodes(self.r, pipe)
        for node in nodes:
            pipe.execute_command("WAIT", self.replicas, self.replica_wait_ms, target_nodes=node)
        return len(nodes)

    def _acks(self) -> list[tuple[Any, ...]]:
        """The commands that end a primary's share of a write pipeline, on its connection
        after its writes, so that its replies count only once the writes are held: WAIT
        for `replicas` (nothing without). The CDR store adds WAITAOF. `_follow` ends the
        share of each node a write was redirected to with the same commands."""
        return [("WAIT", self.replicas, self.replica_wait_ms)] if self.replicas else []

    def _check_ack(self, cmd: tuple[Any, ...], got: Any) -> None:
        """StoreUnavailable unless `got`, the reply to the `_acks` command `cmd`, says the
        writes before it are held."""
        self._check_waits([got])

    def _send(self, pipe: Any) -> list[Any]:
        """`pipe.execute(raise_on_error=False)`: the replies in order, errors as values.

        On a cluster with `_acks` (`replicas`; the CDR store's WAITAOF), MOVED and ASK are
        followed here, not by redis-py: redis-py sends a redirected command again alone, on
        a connection of the new node's pool, after the pipeline's WAITs were answered, so
        no WAIT covers that write (and one it resends after a connection error, WAIT
        included, goes out without its node). Here the pipeline goes out with redirections
        off; each MOVED/ASK reply is sent again to the node it names (after ASKING for an
        ASK; a MOVED also updates the slot map) in one pipeline that ends with the `_acks`
        on each such node, so they follow the write on the same connection. One there that
        falls short is StoreUnavailable (`_check_ack`). A connection error or TRYAGAIN
        stays a value, for the caller to raise (3004; the client's retry is idempotent)."""
        acks = self._acks()
        if not acks or not is_cluster(self.r):
            return list(pipe.execute(raise_on_error=False))
        queue = _queued(pipe)
        if queue is None:  # an unknown redis-py: its own redirects (not covered)
            return list(pipe.execute(raise_on_error=False))
        try:
            res = list(pipe.send_cluster_commands(queue, raise_on_error=False,
                                                  allow_redirections=False))  # fmt: skip
        finally:
            pipe.reset()
        self._follow(queue, res, acks)
        return res

    def _follow(self, queue: list[Any], res: list[Any], acks: list[tuple[Any, ...]]) -> None:
        """Send the commands of `queue` whose reply in `res` is MOVED or ASK to the node
        named, each node's share followed by `acks`, and put their replies in `res`; again
        while a reply redirects (a slot that moved on meanwhile), `REDIRECTS` rounds at
        most (StoreUnavailable after: the slot is still moving, 3004)."""
        from redis.exceptions import AskError, MovedError

        r = self.r
        for _ in range(REDIRECTS):
            redirected = [i for i, x in enumerate(res) if isinstance(x, AskError)]
            if not redirected:
                return
            redo = r.pipeline(transaction=False)
            at: list[int] = []  # redo's replies -> index in res; ASKING -1, acks[k] -2-k
            nodes: dict[str, Any] = {}
            for i in redirected:
                e = res[i]
                node = self._redirect_node(e)
                if not isinstance(e, MovedError):  # ASK: this command only, map unchanged
                    redo.execute_command("ASKING", target_nodes=node)
                    at.append(-1)
                c = queue[i]
                redo.execute_command(*c.args, **{**c.options, "target_nodes": node})
                at.append(i)
                nodes.setdefault(node.name, node)
            for node in nodes.values():
                for k, cmd in enumerate(acks):
                    redo.execute_command(*cmd, target_nodes=node)
                    at.append(-2 - k)
            redo_queue = _queued(redo)
            try:
                got = list(redo.send_cluster_commands(redo_queue, raise_on_error=False,
                                                      allow_redirections=False))  # fmt: skip
            finally:
                redo.reset()
            for j, x in zip(at, got, strict=True):
                if j >= 0:
                    res[j] = x
                elif j <= -2:
                    self._check_ack(acks[-2 - j], x)
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
        self.r.close()
