"""One asyncio loop on a daemon thread, for hosts that call environments synchronously.

SkyRL steps its environments from a thread pool (32 workers by default) and expects plain
blocking calls. The core is async (HTTP user simulators, the episode state machine), so every
synchronous caller in a process submits its coroutines to one shared loop here and blocks on the
result: the episodes of all worker threads then interleave on that loop exactly as they do under an
async host, sharing HTTP pools and per-endpoint limits, instead of each thread spinning up a loop
of its own.

The loop is started on first use and restarted after a fork (a child process does not inherit the
parent's threads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's shared loop, started on first use (and again in a forked child)."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or not _loop.is_running():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name="tau-adapters-loop", daemon=True)
            thread.start()
            started.wait()
            _loop, _pid = loop, os.getpid()
        return _loop


def call(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` on the shared loop and wait for its result from a synchronous caller.

    On timeout the coroutine is cancelled and `TimeoutError` raised. Calling this from the loop's
    own thread would deadlock, so that raises `RuntimeError` at once.
    """
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("background_loop.call() from the background loop itself would deadlock")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"no result within {timeout} s") from None
