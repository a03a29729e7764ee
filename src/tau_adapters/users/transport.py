"""Transports to the model that plays the user: litellm (any provider) or a plain OpenAI-compatible
endpoint, with a per-endpoint concurrency limit shared by every user simulator (tau2's and v1's).

Each transport also says which model the endpoint serves (`reported_model`, for the user
fingerprint): ``GET /models`` where the endpoint is OpenAI-compatible, else litellm's resolution.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import ConfigError, EndpointError, install_hint
from tau_adapters.runtime.http_client import RetryPolicy, get_json, post_json
from tau_adapters.runtime.scheduling import per_loop

#: litellm providers that talk to an OpenAI-compatible server (which answers ``GET /models``).
OPENAI_COMPATIBLE_PROVIDERS = frozenset(
    {"openai", "hosted_vllm", "openai_like", "custom_openai", "lm_studio", "vllm"}
)


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


def pick_model(ids: list[str], asked: str) -> str | None:
    """The served model among ``GET /models`` ids: the one asked for if listed, else the only
    one served (SGLang and vLLM answer under their own name whatever is asked)."""
    if asked in ids:
        return asked
    if len(ids) == 1:
        return ids[0]
    return None


async def list_models(base_url: str, api_key: str | None) -> tuple[list[str] | None, str | None]:
    """``GET {base}/models``: (the served ids, None) or (None, why not)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    status, body = await get_json(base_url, "/models", headers=headers)
    if status is None:
        return None, str(body)
    data = body.get("data") if isinstance(body, dict) else None
    if status != 200 or not isinstance(data, list):
        return None, f"GET /models -> HTTP {status}"
    return [str(entry.get("id")) for entry in data if isinstance(entry, dict)], None


async def _reported(base_url: str, api_key: str | None, asked: str) -> dict[str, Any]:
    ids, error = await list_models(base_url, api_key)
    if ids is None:
        return {"model_reported": None, "model_reported_error": error}
    found = pick_model(ids, asked)
    if found is None:
        return {"model_reported": None, "models_listed": sorted(ids)}
    return {"model_reported": found}


def endpoint_limit(key: str, size: int) -> asyncio.Semaphore:
    """One semaphore per endpoint and event loop: at most `size` calls in flight."""
    return per_loop(("user-endpoint", key, size), lambda: asyncio.Semaphore(size))


class OpenAITransport:
    """``POST {base}/chat/completions`` over the shared HTTP pool."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None, retry: RetryPolicy):
        self.base_url = base_url.rstrip("/").removesuffix("/chat/completions")
        self.model = model
        self.api_key = api_key
        self.retry = retry
        self.key = f"openai:{self.base_url}"
        self.kind = "openai"
        self.endpoint = self.base_url

    async def reported_model(self) -> dict[str, Any]:
        """What the endpoint says it serves (``GET /models``)."""
        return await _reported(self.base_url, self.api_key, self.model)

    async def complete(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        body = await post_json(
            self.base_url,
            "/chat/completions",
            {"model": self.model, **payload},
            headers=headers,
            retry=self.retry,
        )
        try:
            message = body["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(
                f"user simulator answer has no choices[0].message: {str(body)[:200]}"
            ) from None
        return message, dict(body.get("usage") or {})


class LiteLLMTransport:
    """litellm's async completion (any provider, model names as litellm spells them)."""

    def __init__(self, model: str, *, api_base: str | None, retry: RetryPolicy):
        try:
            import litellm
        except ImportError:
            raise ConfigError(
                "--user litellm:MODEL needs litellm: install the tau2 extra ("
                + install_hint("tau2")
                + "), or use --user openai:URL for an OpenAI-compatible endpoint"
            ) from None
        self.litellm = litellm
        self.model = model
        self.api_base = api_base
        self.retry = retry
        self.key = f"litellm:{api_base or model}"
        self.kind = "litellm"
        self.endpoint = api_base
        self.rng = random.Random()

    async def reported_model(self) -> dict[str, Any]:
        """litellm's resolved ``provider/model``; where that provider is an OpenAI-compatible
        server at ``api_base``, the model its ``GET /models`` reports."""
        try:
            name, provider, key, _ = self.litellm.get_llm_provider(
                self.model, api_base=self.api_base
            )
        except Exception as exc:
            return {"model_reported": None, "model_reported_error": f"litellm: {exc}"[:300]}
        resolved = {"provider": provider, "model_resolved": f"{provider}/{name}"}
        if self.api_base and provider in OPENAI_COMPATIBLE_PROVIDERS:
            import os

            api_key = key or os.environ.get("OPENAI_API_KEY")
            return {**resolved, **await _reported(self.api_base, api_key, name)}
        return {**resolved, "model_reported": f"{provider}/{name}"}

    def _retryable(self, exc: Exception) -> bool:
        litellm = self.litellm
        kinds = tuple(
            getattr(litellm, name)
            for name in (
                "Timeout", "RateLimitError", "APIConnectionError", "InternalServerError",
                "ServiceUnavailableError", "BadGatewayError", "APIError",
            )
            if hasattr(litellm, name)
        )  # fmt: skip
        return isinstance(exc, (*kinds, asyncio.TimeoutError, ConnectionError))

    async def complete(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        last = "no attempt"
        for attempt in range(self.retry.attempts):
            try:
                response = await self.litellm.acompletion(
                    model=self.model,
                    api_base=self.api_base,
                    timeout=self.retry.timeout_s,
                    num_retries=0,
                    **payload,
                )
            except Exception as exc:
                last = f"{type(exc).__name__}: {str(exc)[:300]}"
                if "No module named" in str(exc):  # litellm imports optional parts lazily
                    raise EndpointError(
                        f"user simulator call failed: {last} (litellm needs an optional module: "
                        "pip install 'litellm[mcp]', which the tau2 extra installs)"
                    ) from None
                if not self._retryable(exc):
                    raise EndpointError(f"user simulator call failed: {last}") from None
                if attempt + 1 < self.retry.attempts:
                    await asyncio.sleep(self.retry.delay(attempt, self.rng))
                continue
            message = response.choices[0].message
            data = message.model_dump() if hasattr(message, "model_dump") else dict(message)
            usage = dict(getattr(response, "usage", None) or {})
            with contextlib.suppress(Exception):  # unknown models have no price
                usage["cost"] = float(self.litellm.completion_cost(completion_response=response))
            return data, usage
        raise EndpointError(
            f"user simulator: {last} (gave up after {self.retry.attempts} attempts)"
        )


def make_transport(kind: str, arg: str | None, config: EpisodeConfig) -> Any:
    retry = RetryPolicy(attempts=config.user_attempts, timeout_s=config.user_timeout_s)
    if kind == "openai":
        base = arg or config.user_api_base
        if not base or not config.user_model:
            raise ConfigError(
                "--user openai:URL needs the endpoint and --user-model NAME "
                "(or $TAU2_USER_API_BASE and $TAU2_USER_MODEL)"
            )
        import os

        return OpenAITransport(
            base, config.user_model, api_key=os.environ.get("OPENAI_API_KEY"), retry=retry
        )
    model = arg or config.user_model
    if not model:
        raise ConfigError("--user litellm:MODEL needs a model name (or $TAU2_USER_MODEL)")
    return LiteLLMTransport(model, api_base=config.user_api_base, retry=retry)
