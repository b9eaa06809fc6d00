"""The two store backends, one module per concern, so that each can be read (and, for issue
10's per-shard writers, replaced) on its own. The public classes are assembled in
`charging/sqlite_store.py` and `charging/redis_store.py`; the applications see only the
protocols in `charging/store.py` (`GyStore`, `SyStore`, `AdminStore`, `CdrStore`).

| concern | SQLite | Redis |
|---|---|---|
| connection, transactions, row helpers | `sqlite_db` | `redis_db` |
| credit control (the money path) | `sqlite_cc` | `redis_cc` |
| sweeps and notices | `sqlite_sweep` | `redis_sweep` |
| accounts and admin | `sqlite_accounts` | `redis_accounts` |
| Sy subscriptions | `sqlite_sy` | `redis_sy` |
| Rf records (CDR store, own file/connection) | `sqlite_cdr` | `redis_cdr` |

`common` holds what the two backends share: the no-wait switch, the provisioning-rule cache,
and the pure rules for imports, top-ups and blocking.
"""
