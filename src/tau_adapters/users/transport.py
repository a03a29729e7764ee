"""Transports to the model that plays the user: litellm (any provider) or a plain OpenAI-compatible
endpoint, with a per-endpoint concurrency limit shared by every user simulator (tau2's and v1's)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import ConfigError, EndpointError
from tau_adapters.runtime.http_client import RetryPolicy, post_json
from tau_adapters.runtime.scheduling import per_loop


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
                "--user litellm:MODEL needs litellm: pip install 'tau-adapters[tau2]' "
                "(or use --user openai:URL for an OpenAI-compatible endpoint)"
            ) from None
        self.litellm = litellm
        self.model = model
        self.api_base = api_base
        self.retry = retry
        self.key = f"litellm:{api_base or model}"
        self.rng = random.Random()

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
                        "pip install 'tau-adapters[tau2]', which installs litellm[mcp])"
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
