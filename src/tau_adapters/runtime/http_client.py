"""Pooled JSON-over-HTTP with timeouts and retries: what every engine and simulator client uses.

One aiohttp session per event loop, shared by all episodes (its connector pools connections per
host without scanning the whole pool on every request, and parses HTTP in C: per-request CPU on
the event loop is what limits hundreds of concurrent episodes). Connection errors, timeouts,
dropped connections, 429, 5xx and unreadable bodies are retried with exponential backoff and
jitter; other 4xx are not (they are the caller's mistake). After the last attempt an
`EndpointError` carries the reason; callers turn it into an episode status.

A router may relay an engine's 4xx as a 502: ThunderAgent's ``/generate`` (tool_improve,
``--enable-slime-adapter``) answers every engine failure with 502 and ``{"detail": "Backend
generate request failed: <httpx error>"}``, and httpx words an engine's 4xx as ``Client error
'400 Bad Request' for url ...``. `relayed_client_error` reads that: a relayed 4xx is the engine's
deterministic answer and is not retried (a retry would fail the same way, and each one also counts
as a step of the episode's program in the router); relayed 408/425/429 and relayed 5xx, timeouts
and connection errors stay retryable.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from tau_adapters.errors import EndpointError
from tau_adapters.runtime.scheduling import forget, per_loop

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    timeout_s: float = 600.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2**attempt)) * rng.uniform(0.5, 1.5)


DEFAULT_RETRY = RetryPolicy()

_RELAYED_CLIENT_ERROR = re.compile(r"Client error '(4\d\d)\b")


def relayed_client_error(status: int, raw: bytes) -> int | None:
    """The engine's 4xx status inside a router's 502 answer (ThunderAgent's ``detail`` carries
    httpx's ``Client error '4xx ...'``), or None when the 502 is the router's own or transient."""
    if status != 502:
        return None
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    match = _RELAYED_CLIENT_ERROR.search(detail) if isinstance(detail, str) else None
    return int(match.group(1)) if match else None


_closers: set[asyncio.Future[None]] = set()


async def _close_at_shutdown(session: Any) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()


def shared_session() -> Any:
    """The aiohttp session of the running event loop (created on first use)."""
    import aiohttp

    def make() -> Any:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector, json_serialize=json.dumps)
        # asyncio.run() cancels leftover tasks before closing its loop: close the pool then.
        closer = asyncio.ensure_future(_close_at_shutdown(session))
        _closers.add(closer)
        closer.add_done_callback(_closers.discard)
        return session

    session = per_loop("http-session", make)
    if session.closed:
        forget("http-session")
        session = per_loop("http-session", make)
    return session


async def post_json(
    base_url: str,
    path: str,
    payload: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    rng: random.Random | None = None,
    affinity: str | None = None,
) -> dict[str, Any]:
    """POST `payload` and return the decoded JSON object, retrying transient failures.

    `affinity` (an episode id) is accepted for routing-aware callers; connections are pooled per
    host either way.
    """
    import aiohttp

    rng = rng or random.Random()
    session = shared_session()
    url = base_url.rstrip("/") + path
    data = json.dumps(payload, separators=(",", ":")).encode()
    send_headers = {"content-type": "application/json", **(headers or {})}
    timeout = aiohttp.ClientTimeout(total=retry.timeout_s)
    last = "no attempt made"
    for attempt in range(retry.attempts):
        retryable = True
        status: int | None = None
        try:
            async with session.post(
                url, data=data, headers=send_headers, timeout=timeout
            ) as response:
                status = response.status
                raw = await response.read()
            if status >= 400:
                retryable = status in RETRYABLE_STATUS
                last = f"HTTP {status} from {url}: {raw[:200]!r}"
                relayed = relayed_client_error(status, raw)
                if relayed is not None and relayed not in RETRYABLE_STATUS:
                    retryable, status = False, relayed
                    last = f"HTTP 502 from {url} relaying the engine's {relayed}: {raw[:300]!r}"
            else:
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    last = f"unreadable JSON from {url}: {exc}"
                else:
                    if isinstance(body, dict):
                        return body
                    last = f"expected a JSON object from {url}, got {type(body).__name__}"
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            last = f"timeout after {retry.timeout_s}s talking to {url} ({type(exc).__name__})"
        except aiohttp.ClientError as exc:  # connect errors, dropped connections, bad payloads
            last = f"{type(exc).__name__} talking to {url}: {exc}"
        if not retryable:
            raise EndpointError(last, status=status, retryable=False)
        if attempt + 1 < retry.attempts:
            await asyncio.sleep(retry.delay(attempt, rng))
    raise EndpointError(f"{last} (gave up after {retry.attempts} attempts)", retryable=True)


async def get_json(
    base_url: str, path: str, *, timeout_s: float = 10.0, headers: dict[str, str] | None = None
) -> tuple[int | None, Any]:
    """One GET, no retries (for start-up probes): ``(status, decoded JSON or None)``, or
    ``(None, reason)`` when the server could not be reached."""
    import aiohttp

    url = base_url.rstrip("/") + path
    try:
        async with shared_session().get(
            url, timeout=aiohttp.ClientTimeout(total=timeout_s), headers=headers
        ) as response:
            raw = await response.read()
            status = response.status
    except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
        return None, f"{type(exc).__name__} talking to {url}: {exc}"
    try:
        return status, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return status, None
