"""Chat completions at a model endpoint we do not own: a plain OpenAI-compatible server
(``POST {base}/chat/completions`` over the pooled `http_client`) or litellm's ``acompletion``
(any provider), each retried under a `RetryPolicy`.

Two callers in different layers use them: the user simulator (``users/``) and the judge of
natural-language assertions (``rewards/``, below ``users/``), so the transports live here, at the
bottom. Each transport is told `who` it speaks for ("user simulator", "judge"): its error messages
name it, and it raises the caller's `error` class (`EndpointError` or a subclass, with the HTTP
status kept), so a failure reads the same whichever side hit it.

Retries follow one rule on both paths: timeouts, connection errors, 429 and 5xx are retried with
backoff; anything else (a 400, a bad key, an unknown model) fails at once, since asking again would
get the same answer. `parse_endpoint_spec` reads the ``openai:URL`` / ``litellm:MODEL`` settings
both sides share and names the missing setting in a `ConfigError` at start-up. litellm is imported
only where a litellm endpoint is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from dataclasses import dataclass
from typing import Any, Protocol

from tau_adapters.errors import ConfigError, EndpointError, install_hint
from tau_adapters.runtime.http_client import RetryPolicy, get_json, post_json

#: litellm providers that talk to an OpenAI-compatible server (which answers ``GET /models``).
OPENAI_COMPATIBLE_PROVIDERS = frozenset(
    {"openai", "hosted_vllm", "openai_like", "custom_openai", "lm_studio", "vllm"}
)

#: litellm's exceptions for a failure that may pass (those this litellm defines are used).
LITELLM_RETRYABLE = (
    "Timeout", "RateLimitError", "APIConnectionError", "InternalServerError",
    "ServiceUnavailableError", "BadGatewayError", "APIError",
)  # fmt: skip


def litellm_retryable(litellm: Any, exc: BaseException) -> bool:
    """Whether a litellm call that raised `exc` is worth another attempt: timeouts, connection
    errors, rate limits and server errors are; a bad request, key or model name is not."""
    kinds = tuple(getattr(litellm, name) for name in LITELLM_RETRYABLE if hasattr(litellm, name))
    return isinstance(exc, (*kinds, asyncio.TimeoutError, ConnectionError))


def _bearer(api_key: str | None) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {api_key}"} if api_key else None


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
    status, body = await get_json(base_url, "/models", headers=_bearer(api_key))
    if status is None:
        return None, str(body)
    data = body.get("data") if isinstance(body, dict) else None
    if status != 200 or not isinstance(data, list):
        return None, f"GET /models -> HTTP {status}"
    return [str(entry.get("id")) for entry in data if isinstance(entry, dict)], None


async def served_model_report(base_url: str, api_key: str | None, asked: str) -> dict[str, Any]:
    """What an OpenAI-compatible endpoint says it serves for `asked`, as fingerprint fields:
    ``model_reported``, else why not (``model_reported_error``, or the ``models_listed``)."""
    ids, error = await list_models(base_url, api_key)
    if ids is None:
        return {"model_reported": None, "model_reported_error": error}
    found = pick_model(ids, asked)
    if found is None:
        return {"model_reported": None, "models_listed": sorted(ids)}
    return {"model_reported": found}


class ChatTransport(Protocol):
    """What callers rely on: one chat completion, and what the endpoint says it serves."""

    kind: str
    model: str
    key: str
    endpoint: str | None

    async def complete(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the reply's ``message`` object, the ``usage`` object) for a request body."""
        ...

    async def reported_model(self) -> dict[str, Any]:
        """The served model as fingerprint fields (see `served_model_report`)."""
        ...


class _Transport:
    """What both transports hold: the endpoint (`key` names it for per-endpoint limits), the
    model, how to retry, and whom (`who`) and how (`error`) their failures are told."""

    def __init__(
        self,
        kind: str,
        model: str,
        endpoint: str | None,
        *,
        retry: RetryPolicy,
        who: str,
        error: type[EndpointError],
    ) -> None:
        self.kind = kind
        self.model = model
        self.endpoint = endpoint
        self.key = f"{kind}:{endpoint or model}"
        self.retry = retry
        self.who = who
        self.error = error
        self.rng = random.Random()


class OpenAITransport(_Transport):
    """``POST {base}/chat/completions`` over the shared HTTP pool (its retries: `post_json`)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None,
        retry: RetryPolicy,
        who: str,
        error: type[EndpointError] = EndpointError,
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/chat/completions")
        self.api_key = api_key
        super().__init__("openai", model, self.base_url, retry=retry, who=who, error=error)

    async def reported_model(self) -> dict[str, Any]:
        """What the endpoint says it serves (``GET /models``)."""
        return await served_model_report(self.base_url, self.api_key, self.model)

    async def complete(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            body = await post_json(
                self.base_url,
                "/chat/completions",
                {"model": self.model, **payload},
                headers=_bearer(self.api_key),
                retry=self.retry,
                rng=self.rng,
            )
        except EndpointError as exc:
            raise self.error(
                f"{self.who} endpoint: {exc}", status=exc.status, retryable=exc.retryable
            ) from None
        try:
            message = body["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            message = None
        if not isinstance(message, dict):
            raise self.error(f"{self.who} answer has no choices[0].message: {str(body)[:200]}")
        return message, dict(body.get("usage") or {})


class LiteLLMTransport(_Transport):
    """litellm's async completion (any provider, model names as litellm spells them).

    litellm must be installed: `parse_endpoint_spec` checks that at start-up, naming the setting.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None,
        retry: RetryPolicy,
        who: str,
        error: type[EndpointError] = EndpointError,
    ) -> None:
        import litellm

        self.litellm = litellm
        self.api_base = api_base
        super().__init__("litellm", model, api_base, retry=retry, who=who, error=error)

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
            api_key = key or os.environ.get("OPENAI_API_KEY")
            return {**resolved, **await served_model_report(self.api_base, api_key, name)}
        return {**resolved, "model_reported": f"{provider}/{name}"}

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
                status = getattr(exc, "status_code", None)
                status = status if isinstance(status, int) else None
                if "No module named" in str(exc):  # litellm imports optional parts lazily
                    raise self.error(
                        f"{self.who} call failed: {last} (litellm needs an optional module: "
                        "pip install 'litellm[mcp]', which the tau2 extra installs)"
                    ) from None
                if not litellm_retryable(self.litellm, exc):
                    raise self.error(f"{self.who} call failed: {last}", status=status) from None
                if attempt + 1 < self.retry.attempts:
                    await asyncio.sleep(self.retry.delay(attempt, self.rng))
                continue
            message = response.choices[0].message
            data = message.model_dump() if hasattr(message, "model_dump") else dict(message)
            usage = dict(getattr(response, "usage", None) or {})
            with contextlib.suppress(Exception):  # unknown models have no price
                usage["cost"] = float(self.litellm.completion_cost(completion_response=response))
            return data, usage
        raise self.error(
            f"{self.who}: {last} (gave up after {self.retry.attempts} attempts)", retryable=True
        )


@dataclass(frozen=True)
class SettingNames:
    """How one caller's endpoint settings are spelled, for the `ConfigError` that names the fix:
    e.g. ``--user`` with ``--user-model NAME ($TAU2_USER_MODEL)``."""

    spec: str
    model_name: str
    api_base: str


@dataclass(frozen=True)
class EndpointSpec:
    """A checked ``openai:URL`` or ``litellm:MODEL`` setting: which transport, which model, and
    the base URL (required for openai; litellm's optional ``api_base``)."""

    kind: str
    model: str
    base_url: str | None

    def transport(
        self, retry: RetryPolicy, *, who: str, error: type[EndpointError] = EndpointError
    ) -> OpenAITransport | LiteLLMTransport:
        """The transport to this endpoint (an openai endpoint's key: ``$OPENAI_API_KEY``)."""
        if self.kind == "openai":
            assert self.base_url is not None
            return OpenAITransport(
                self.base_url,
                self.model,
                api_key=os.environ.get("OPENAI_API_KEY"),
                retry=retry,
                who=who,
                error=error,
            )
        return LiteLLMTransport(
            self.model, api_base=self.base_url, retry=retry, who=who, error=error
        )


def parse_endpoint_spec(
    kind: str,
    arg: str | None,
    *,
    model_name: str | None,
    api_base: str | None,
    names: SettingNames,
) -> EndpointSpec:
    """``openai`` with ``arg`` the URL (else `api_base`) and `model_name` the served model, or
    ``litellm`` with ``arg`` the model (else `model_name`) and optional `api_base`; a setting
    that cannot work raises `ConfigError` naming the setting (litellm missing included)."""
    if kind == "openai":
        base = arg or api_base
        if not base or not model_name:
            raise ConfigError(
                f"{names.spec} openai:URL needs the endpoint URL (there or {names.api_base}) "
                f"and {names.model_name}"
            )
        return EndpointSpec("openai", model_name, base)
    if kind != "litellm":
        raise ConfigError(
            f"{names.spec} {kind}: unknown endpoint kind; use openai:URL or litellm:MODEL"
        )
    model = arg or model_name
    if not model:
        raise ConfigError(f"{names.spec} litellm:MODEL needs a model name (or {names.model_name})")
    try:
        import litellm  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{names.spec} litellm:{model} needs litellm: install the tau2 extra "
            f"({install_hint('tau2')}), or use {names.spec} openai:URL with {names.model_name} "
            "for an OpenAI-compatible endpoint"
        ) from None
    return EndpointSpec("litellm", model, api_base)


__all__ = [
    "OPENAI_COMPATIBLE_PROVIDERS",
    "ChatTransport",
    "EndpointSpec",
    "LiteLLMTransport",
    "OpenAITransport",
    "SettingNames",
    "list_models",
    "litellm_retryable",
    "parse_endpoint_spec",
    "pick_model",
    "served_model_report",
]
