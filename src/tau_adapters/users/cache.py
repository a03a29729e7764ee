"""An opt-in on-disk cache of the user simulator's replies (``--user-cache DIR``).

A re-run of an evaluation against the same policy outputs asks the user model exactly the same
things; with the cache those replies are replayed instead of bought again, and a training run can
share one cache between its worker processes on one machine.

Why it is safe:
- The key is the SHA-256 of the *full key material*: the user fingerprint (transport, the model the
  endpoint reports, sampling settings, prompt hash, benchmark version; see `fingerprint`) and the
  exact request body (messages, tools, seed, ...). The material itself is stored next to the reply
  and compared on every read, so even a hash collision can never hand back another request's reply:
  it is a miss (and counted as a collision).
- SQLite in WAL mode with a busy timeout: several processes read and write one file concurrently;
  a write is one ``INSERT OR IGNORE`` (the first reply stored for a request stays).
- The file carries a format marker and version; a corrupt file or any other database is refused at
  start-up with the reason (`ConfigError`), never silently reused or overwritten.
- sqlite3 blocks, so every database call runs on the cache's own thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tau_adapters.errors import ConfigError

CACHE_FILE = "user_cache.sqlite3"
FORMAT = "tau-adapters-user-cache"
FORMAT_VERSION = "1"
BUSY_TIMEOUT_MS = 60_000
QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024


def canonical(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, non-ASCII kept (hashing and comparing)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def key_material(fingerprint: dict[str, Any], request: dict[str, Any]) -> str:
    """What a cached reply is keyed by: the fingerprint and the request body, as canonical JSON.

    Left out of the fingerprint: its ``id`` (a digest of the rest), the base ``seed`` (the
    per-episode seed actually sent is in the request) and the ``endpoint`` (where the model is
    served is recorded, not pinned)."""
    pinned = {k: v for k, v in fingerprint.items() if k not in ("id", "seed", "endpoint")}
    return canonical({"fingerprint": pinned, "request": request})


def key_of(material: str) -> str:
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class UserCache:
    """One SQLite file; use `open_cache` (one object per folder and process)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / CACHE_FILE
        self._pid = os.getpid()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tau-adapters-cache")
        self._conn: sqlite3.Connection | None = None
        self.collisions = 0
        #: Reads or writes that failed at run time (a full disk, a page gone bad): each one is
        #: a miss or an unsaved reply, never a failed episode; logged once.
        self.errors = 0
        # Opened (and checked) on the cache's own thread, so the connection never changes thread.
        self._executor.submit(self._open).result()

    # -- on the cache thread ------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"setting 'user_cache': cannot create {self.folder}: {exc.strerror or exc}; "
                "pass a writable folder to --user-cache"
            ) from None
        refuse = f"setting 'user_cache': {self.path} is not a usable tau-adapters user cache"
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"{refuse} ({exc}: the file is corrupt or not SQLite); delete it or pick "
                "another --user-cache folder"
            ) from None
        if tables and not {"meta", "replies"} <= tables:
            conn.close()
            raise ConfigError(
                f"{refuse}: it is another program's database (tables: {', '.join(sorted(tables))}); "
                "pick another --user-cache folder"
            )
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    f"{refuse}: SQLite cannot use WAL mode there (got {mode!r}; a network file "
                    "system?); put the cache on a local disk"
                )
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, material TEXT NOT NULL,"
                " reply TEXT NOT NULL, usage TEXT NOT NULL)"
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('format', ?), ('version', ?)",
                (FORMAT, FORMAT_VERSION),
            )
            conn.execute("COMMIT")
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            # A full check reads the whole file: done at start-up while that stays quick; past
            # that size a bad page shows up later as a read error (a miss, see `errors`).
            small = self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES
            check = conn.execute("PRAGMA quick_check").fetchone()[0] if small else "ok"
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigError(
                f"{refuse} ({exc}); delete it or pick another --user-cache folder"
            ) from None
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            conn.close()
            raise ConfigError(
                f"{refuse}: its format is {meta.get('format')!r} version {meta.get('version')!r}, "
                f"this tau-adapters reads {FORMAT!r} version {FORMAT_VERSION!r}; pick another "
                "--user-cache folder"
            )
        if check != "ok":
            conn.close()
            raise ConfigError(f"{refuse}: integrity check failed ({check}); delete it")
        self._conn = conn

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        if self.errors == 1:
            import logging

            logging.getLogger("tau_adapters").warning(
                "user cache %s: %s failed (%s); the user model is called instead",
                self.path,
                what,
                exc,
            )

    def _get(self, key: str, material: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        assert self._conn is not None
        try:
            row = self._conn.execute(
                "SELECT material, reply, usage FROM replies WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            self._failed("a read", exc)
            return None
        if row is None:
            return None
        if row[0] != material:  # same hash, different request: never hand back its reply
            self.collisions += 1
            return None
        return json.loads(row[1]), json.loads(row[2])

    def _put(self, key: str, material: str, reply: dict[str, Any], usage: dict[str, Any]) -> None:
        assert self._conn is not None
        try:
            self._conn.execute(
                "INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?)",
                (key, material, canonical(reply), canonical(usage)),
            )
        except sqlite3.Error as exc:
            self._failed("a write", exc)

    # -- from the event loop ------------------------------------------------------------------
    async def get(
        self, fingerprint: dict[str, Any], request: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The stored (reply, usage) for exactly this fingerprint and request, or None."""
        material = key_material(fingerprint, request)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._get, key_of(material), material)

    async def put(
        self,
        fingerprint: dict[str, Any],
        request: dict[str, Any],
        reply: dict[str, Any],
        usage: dict[str, Any],
    ) -> None:
        material = key_material(fingerprint, request)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, self._put, key_of(material), material, reply, usage
        )

    def entries(self) -> int:
        """Stored replies (for reports and tests; blocks: not for the event loop)."""
        return int(
            self._executor.submit(
                lambda: self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]  # type: ignore[union-attr]
            ).result()
        )


_caches: dict[tuple[int, str], UserCache] = {}
_caches_lock = threading.Lock()


def open_cache(folder: str | os.PathLike[str]) -> UserCache:
    """The process's cache for `folder`, opened and checked on first use (`ConfigError` if the
    file there is corrupt or foreign). A forked child opens its own connection."""
    path = Path(folder).expanduser().resolve()
    key = (os.getpid(), str(path))
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = UserCache(path)
        return cache


class CachedTransport:
    """A user-model transport that answers from the cache when it can.

    A hit returns the stored reply with ``usage = {"cache": "hit", "saved_cost": ...,
    "saved_tokens": ...}`` (nothing spent); a miss calls the model, stores a non-empty reply and
    returns its usage marked ``"cache": "miss"``. The user simulator `bind`s how the fingerprint
    is resolved (once per event loop, `fingerprint.user_fingerprint`), so the key includes the
    model the endpoint reports and the simulator's prompt hash.
    """

    def __init__(self, inner: Any, cache: UserCache) -> None:
        self.inner = inner
        self.cache = cache
        self.fingerprint: Callable[[], Awaitable[dict[str, Any]]] | None = None
        self.kind = inner.kind
        self.key = inner.key
        self.model = inner.model
        self.endpoint = inner.endpoint

    def bind(self, fingerprint: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """The user simulator that owns this transport says how its fingerprint is resolved
        (which prompt it hashes is the simulator's business)."""
        self.fingerprint = fingerprint

    async def reported_model(self) -> dict[str, Any]:
        return await self.inner.reported_model()  # type: ignore[no-any-return]

    async def complete(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.fingerprint is None:  # no user bound it: nothing to key on, so no cache
            return await self.inner.complete(payload)  # type: ignore[no-any-return]
        fingerprint = await self.fingerprint()
        found = await self.cache.get(fingerprint, payload)
        if found is not None:
            reply, usage = found
            tokens = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
            return reply, {  # the reply's own token counts stay with it; nothing is spent
                "cache": "hit",
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "saved_cost": float(usage.get("cost") or 0.0),
                "saved_tokens": tokens,
            }
        reply, usage = await self.inner.complete(payload)
        if reply.get("tool_calls") or (reply.get("content") or "").strip():
            kept = {k: reply[k] for k in ("role", "content", "tool_calls") if k in reply}
            await self.cache.put(fingerprint, payload, kept, _plain(usage))
            reply = json.loads(canonical(kept))  # exactly what a later hit will return
        return reply, {**usage, "cache": "miss"}


def _plain(usage: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe numbers of a usage record (litellm's objects carry nested details)."""
    return {
        k: v
        for k, v in usage.items()
        if isinstance(v, int | float | str) and not isinstance(v, bool)
    }
