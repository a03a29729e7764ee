"""Keeping the host's event loop responsive while hundreds of episodes run on it.

When an engine answers quickly, many episodes become CPU-ready at once (tokenize a delta, run a
tool, score). Run on the event loop, that work queues up in front of everything else the host
does there (heartbeats, weight-sync callbacks, other requests). `run_cpu` runs it on a small
thread pool instead: the loop thread only schedules, and gets the interpreter back within a switch
interval. ``TAU_ADAPTERS_CPU_THREADS`` sets the pool size (default 4). Each episode's objects are
touched by one thread at a time (an episode awaits its own CPU work); shared, read-mostly state
(parsed databases, templates, tokenizers) is either immutable or locked where its library is not
thread-safe.

`per_loop` keeps one object per running event loop (semaphores and HTTP pools are bound to the
loop that first used them; tests and CLIs run several loops one after another).
"""

from __future__ import annotations

import asyncio
import functools
import os
import weakref
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_store: dict[Hashable, tuple[Any, Any]] = {}


def per_loop(key: Hashable, factory: Callable[[], T]) -> T:
    """The object for `key` on the running loop, made by `factory` on first use in that loop."""
    loop = asyncio.get_running_loop()
    entry = _store.get(key)
    if entry is not None and entry[0]() is loop:
        return entry[1]
    value = factory()
    _store[key] = (weakref.ref(loop), value)
    return value


def forget(key: Hashable) -> None:
    _store.pop(key, None)


def cpu_threads() -> int:
    """``TAU_ADAPTERS_CPU_THREADS`` (default 4); a bad value is an error, never a silent 4."""
    value = os.environ.get("TAU_ADAPTERS_CPU_THREADS", "4")
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        from tau_adapters.errors import ConfigError

        raise ConfigError(f"TAU_ADAPTERS_CPU_THREADS must be a positive integer (got {value!r})")
    return threads


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=cpu_threads(), thread_name_prefix="tau-adapters-cpu")


# A forked child (AReaL's subprocess agent mode forks its process pool) inherits the pool object
# but none of its threads: work sent there would wait forever. The child makes its own pool.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_executor.cache_clear)


async def run_cpu(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a short CPU-bound step of an episode off the event loop and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args, **kwargs))
