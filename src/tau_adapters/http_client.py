"""Pooled JSON-over-HTTP with timeouts and retries: what every engine and simulator client uses.

One `httpx.AsyncClient` per (base URL, event loop), shared by all episodes that talk to it.
Connection errors, timeouts, dropped connections, 429, 5xx and unreadable bodies are retried with
exponential backoff and jitter; other 4xx are not (they are the caller's mistake). After the last
attempt an `EndpointError` carries the reason; callers turn it into an episode status.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any

from tau_adapters.errors import TauAdaptersError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class EndpointError(TauAdaptersError):
    """A request failed for good (after retries, or with a non-retryable status)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    timeout_s: float = 600.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2**attempt)) * rng.uniform(0.5, 1.5)


DEFAULT_RETRY = RetryPolicy()

_clients: dict[tuple[str, int], Any] = {}


def shared_client(base_url: str, *, max_connections: int = 1024) -> Any:
    """The process's AsyncClient for `base_url` on the running event loop (created on first use)."""
    import httpx

    loop = asyncio.get_running_loop()
    key = (base_url, id(loop))
    client = _clients.get(key)
    if client is None or client.is_closed:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=None)
        _clients[key] = client
        # Forget clients of loops that are gone (tests and CLIs run several loops in a row).
        for stale in [k for k in _clients if k[1] != id(loop) and k[0] == base_url]:
            _clients.pop(stale, None)
    return client


async def post_json(
    base_url: str,
    path: str,
    payload: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """POST `payload` and return the decoded JSON object, retrying transient failures."""
    import httpx

    rng = rng or random.Random()
    client = shared_client(base_url)
    last = "no attempt made"
    for attempt in range(retry.attempts):
        retryable = True
        status: int | None = None
        try:
            response = await client.post(
                path, json=payload, headers=headers, timeout=retry.timeout_s
            )
            status = response.status_code
            if status >= 400:
                retryable = status in RETRYABLE_STATUS
                last = f"HTTP {status} from {base_url}{path}: {response.text[:200]}"
            else:
                try:
                    body = response.json()
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    last = f"unreadable JSON from {base_url}{path}: {exc}"
                else:
                    if isinstance(body, dict):
                        return body
                    last = (
                        f"expected a JSON object from {base_url}{path}, got {type(body).__name__}"
                    )
        except httpx.TimeoutException as exc:
            last = f"timeout after {retry.timeout_s}s talking to {base_url}{path} ({type(exc).__name__})"
        except httpx.TransportError as exc:  # connect errors, dropped connections, protocol errors
            last = f"{type(exc).__name__} talking to {base_url}{path}: {exc}"
        if not retryable:
            raise EndpointError(last, status=status, retryable=False)
        if attempt + 1 < retry.attempts:
            await asyncio.sleep(retry.delay(attempt, rng))
    raise EndpointError(f"{last} (gave up after {retry.attempts} attempts)", retryable=True)
