"""The shape of the store code (issue 9): modules by concern under ~600 lines, one protocol per
application that both backends keep, no local result-code constants, and layering that lets
issue 10 replace one concern (e.g. per-shard writers) without touching the others."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from chargegw.codec import ResultCode
from chargegw.workers.charging import core, store
from chargegw.workers.charging.redis_store import RedisCdrStore, RedisStore
from chargegw.workers.charging.sqlite_store import SqliteCdrStore, SqliteStore

CHARGING = Path(store.__file__).resolve().parent
STORES = CHARGING / "stores"
STORE_FILES = [
    CHARGING / "store.py",
    CHARGING / "sqlite_store.py",
    CHARGING / "redis_store.py",
    CHARGING / "bench.py",
    *sorted(STORES.glob("*.py")),
]
BACKENDS = {"sqlite": (SqliteStore, SqliteCdrStore), "redis": (RedisStore, RedisCdrStore)}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def test_store_modules_are_split_by_concern_and_small() -> None:
    assert STORES.is_dir()
    for path in STORE_FILES:
        n = len(path.read_text().splitlines())
        assert n <= 600, f"{path.name} has {n} lines"
    for concern in ("db", "cc", "sweep", "accounts", "sy", "cdr"):
        for backend in BACKENDS:
            assert (STORES / f"{backend}_{concern}.py").is_file(), f"{backend}_{concern}"


def _members(proto: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(proto, inspect.isfunction)
        if not name.startswith("_")
    }


PROTOCOLS = {
    "GyStore": ("credit_control_many", "sweep", "take_notices"),
    "SyStore": ("sy_put", "sy_get", "provision"),
    "AdminStore": ("import_accounts", "topup", "set_blocked", "iter_ledger"),
    "Store": ("credit_control", "sy_delete", "set_rules"),
}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_both_backends_keep_each_applications_protocol(name: str, backend: str) -> None:
    """Every method an application's protocol names is on the assembled backend class, with
    the same parameters (names, order, defaults): the split is invisible to the apps."""
    proto = getattr(store, name)
    members = _members(proto)
    assert set(PROTOCOLS[name]) <= set(members)
    cls = BACKENDS[backend][0]
    for meth, sig in members.items():
        assert hasattr(cls, meth), f"{cls.__name__} lacks {name}.{meth}"
        got = inspect.signature(getattr(cls, meth))
        want = [(p.name, p.default) for p in sig.parameters.values()]
        assert [(p.name, p.default) for p in got.parameters.values()] == want, meth


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_both_cdr_stores_keep_rfs_protocol(backend: str) -> None:
    cls = BACKENDS[backend][1]
    for meth, sig in _members(store.CdrStore).items():
        got = inspect.signature(getattr(cls, meth))
        assert list(got.parameters) == list(sig.parameters), meth


def test_store_protocols_narrow_what_each_app_sees() -> None:
    """Sy cannot reach money movement, Gy cannot reach admin writes, through its protocol."""
    sy, gy = _members(store.SyStore), _members(store.GyStore)
    assert not {"credit_control", "credit_control_many", "topup", "import_accounts"} & set(sy)
    assert not {"topup", "set_blocked", "import_accounts", "set_rules"} & set(gy)
    assert set(_members(store.Store)) >= set(gy) | set(sy) | set(_members(store.AdminStore))


# Result-code constants of core.py (the gy helper's): the stores use ResultCode instead.
_CORE_CODES = {
    n for n, v in vars(core).items() if n.isupper() and isinstance(v, int) and 1000 <= v < 6000
}


@pytest.mark.parametrize("path", STORE_FILES, ids=lambda p: p.name)
def test_no_local_result_code_integers(path: Path) -> None:
    codes = {int(c) for c in ResultCode}
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            value = node.value.value
            if isinstance(value, int) and not isinstance(value, bool) and value in codes:
                assert not any(n.isupper() for n in names), f"{names} = {value}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert not (node.value.id == "core" and node.attr in _CORE_CODES), (
                f"{path.name}:{node.lineno} uses core.{node.attr}; use ResultCode"
            )
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("core"):
            assert not {a.name for a in node.names} & _CORE_CODES, path.name


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.level:
            out.add("." * node.level + (node.module or ""))
    return out


@pytest.mark.parametrize("path", sorted(STORES.glob("*.py")), ids=lambda p: p.name)
def test_store_layers(path: Path) -> None:
    """A backend's concern never imports the other backend, and no store module imports an
    application (gy, sy, rf) or a facade (sqlite_store, redis_store): the facades assemble
    the concerns, not the other way round."""
    imports = _imports(path)
    other = {"sqlite": "redis", "redis": "sqlite"}.get(path.stem.split("_")[0])
    for name in imports:
        leaf = name.lstrip(".").split(".")[-1]
        assert leaf not in ("gy", "sy", "rf", "sqlite_store", "redis_store"), (path.name, name)
        if other is not None:
            assert not leaf.startswith(other + "_"), (path.name, name)


def test_unknown_identity_is_answered_user_unknown_by_both_backends(tmp_path) -> None:
    """The one no-account answer (stores.common.no_account) is RFC 4006's 5030."""
    from chargegw.workers.charging.stores.common import no_account

    op = core.CCOp("s1", 0, core.INITIAL, [], subscriptions=[(0, "999")], now=1.0)
    assert no_account(op).result == ResultCode.DIAMETER_USER_UNKNOWN == 5030
    s = SqliteStore(str(tmp_path / "c.db"))
    try:
        assert s.credit_control(op).result == 5030
    finally:
        s.close()
