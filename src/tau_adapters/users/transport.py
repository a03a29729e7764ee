"""The user simulator's side of its model endpoint: the transport a ``--user`` spec names, a
per-endpoint concurrency limit shared by every user simulator (tau2's and v1's), and usage records.

The transports themselves (litellm, or a plain OpenAI-compatible endpoint, with retries) live in
`tau_adapters.runtime.chat_endpoints`, shared with the NL-assertion judge. Each also says which
model the endpoint serves (`reported_model`, for the user fingerprint): ``GET /models`` where the
endpoint is OpenAI-compatible, else litellm's resolution.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.runtime.chat_endpoints import (
    LiteLLMTransport,
    OpenAITransport,
    SettingNames,
    parse_endpoint_spec,
)
from tau_adapters.runtime.http_client import RetryPolicy
from tau_adapters.runtime.scheduling import per_loop


def record_usage(totals: dict[str, Any], usage: dict[str, Any]) -> float:
    """Add one user-model answer to an episode's usage; returns the cost actually spent.

    A cache hit (``usage["cache"] == "hit"``) spends nothing: it counts in ``cache_hits``,
    ``saved_cost`` and ``saved_tokens``; ``calls``, tokens and ``cost`` count model calls only.
    """
    cache = usage.get("cache")
    if cache == "hit":
        totals["cache_hits"] = totals.get("cache_hits", 0) + 1
        totals["saved_cost"] = totals.get("saved_cost", 0.0) + float(usage.get("saved_cost") or 0)
        totals["saved_tokens"] = totals.get("saved_tokens", 0) + int(usage.get("saved_tokens") or 0)
        return 0.0
    if cache == "miss":
        totals["cache_misses"] = totals.get("cache_misses", 0) + 1
    totals["calls"] += 1
    for key in ("prompt_tokens", "completion_tokens"):
        totals[key] += int(usage.get(key) or 0)
    cost = float(usage.get("cost") or 0.0)
    totals["cost"] += cost
    return cost


def new_usage(cached: bool) -> dict[str, Any]:
    """An episode's empty user usage record (with cache counters when a cache is in use)."""
    usage: dict[str, Any] = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
    if cached:
        usage.update(cache_hits=0, cache_misses=0, saved_cost=0.0, saved_tokens=0)
    return usage


def endpoint_limit(key: str, size: int) -> asyncio.Semaphore:
    """One semaphore per endpoint and event loop: at most `size` calls in flight."""
    return per_loop(("user-endpoint", key, size), lambda: asyncio.Semaphore(size))


#: How the user simulator's endpoint settings are spelled, for the errors that name the fix.
USER_SETTINGS = SettingNames(
    spec="--user",
    model_name="--user-model NAME ($TAU2_USER_MODEL)",
    api_base="--user-api-base ($TAU2_USER_API_BASE)",
)


def make_transport(
    kind: str, arg: str | None, config: EpisodeConfig
) -> OpenAITransport | LiteLLMTransport:
    """The transport of ``--user openai:URL`` or ``--user litellm:MODEL`` (`kind`, `arg`: the
    spec split at its colon); a setting that cannot work raises `ConfigError` naming it."""
    spec = parse_endpoint_spec(
        kind, arg, model_name=config.user_model, api_base=config.user_api_base, names=USER_SETTINGS
    )
    retry = RetryPolicy(attempts=config.user_attempts, timeout_s=config.user_timeout_s)
    return spec.transport(retry, who="user simulator")
