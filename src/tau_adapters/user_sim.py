"""The LLM user simulator: a model plays the customer, as in tau2.

Same role as tau2's `UserSimulator`: tau2's simulation guidelines plus the task's user scenario as
the system prompt, the conversation shown with roles flipped (the agent speaks as "user"), the same
stop signals, and in telecom the user's own tools (the session executes them on the user-side state
and feeds the results back). Two transports: litellm (any provider) and a plain OpenAI-compatible
endpoint (a local SGLang/vLLM server) with no litellm in the path.

Never blocks the event loop (both transports are async), limits concurrent calls per endpoint,
retries timeouts, 429, 5xx and connection errors with backoff, and after the last attempt raises
`EndpointError`, which the session turns into a ``user_error`` termination with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any

from tau_adapters.chat_messages import tool_calls_from_openai
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains.tau2_api import api
from tau_adapters.errors import ConfigError
from tau_adapters.http_client import EndpointError, RetryPolicy, post_json
from tau_adapters.scheduling import per_loop


def _limit(key: str, size: int) -> asyncio.Semaphore:
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


class LLMUser:
    """A per-episode LLM user; one instance per episode (it keeps the conversation)."""

    def __init__(self, transport: Any, config: EpisodeConfig) -> None:
        self.transport = transport
        self.config = config
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] | None = None
        self.usage: dict[str, Any] = {
            "calls": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": 0.0,
        }
        self.seed: int | None = None

    async def start(self, context: Any, history: list[Any]) -> None:
        tools = list(context.user_tools or [])
        self.tools = tools or None
        prompt = api().user_system_prompt(context.task, with_tools=bool(tools))
        self.messages = [{"role": "system", "content": prompt}]
        self.seed = context.seed
        for message in history:
            self._remember_incoming(message)

    def _remember_incoming(self, message: Any) -> None:
        role = getattr(message, "role", None)
        if role == "assistant" and message.content:
            self.messages.append({"role": "user", "content": message.content})
        elif role == "tool":
            for sub in getattr(message, "tool_messages", None) or [message]:
                self.messages.append(
                    {"role": "tool", "tool_call_id": sub.id, "content": sub.content or ""}
                )
        elif role == "user":  # the user's own earlier words (task history)
            self.messages.append(_own_turn(message.content, message.tool_calls))

    async def respond(self, message: Any) -> Any:
        t = api()
        self._remember_incoming(message)
        config = self.config
        payload: dict[str, Any] = {
            "messages": self.messages,
            "temperature": config.user_temperature,
            **({"seed": self.seed} if self.seed is not None else {}),
            **({"max_tokens": config.user_max_tokens} if config.user_max_tokens else {}),
            # tau2 offers the user's tools with tool_choice "auto" (its `generate`).
            **({"tools": self.tools, "tool_choice": "auto"} if self.tools else {}),
            **config.user_extra_body,
        }
        # tau2 asks again when the model returns neither text nor tool calls (a thinking model
        # that spent its budget, a flaky server): up to `user_empty_retries` more times.
        for _ in range(config.user_empty_retries + 1):
            async with _limit(self.transport.key, config.user_concurrency):
                reply, usage = await self.transport.complete(payload)
            self.usage["calls"] += 1
            for key in ("prompt_tokens", "completion_tokens"):
                self.usage[key] += int(usage.get(key) or 0)
            self.usage["cost"] += float(usage.get("cost") or 0.0)
            content = reply.get("content") or None
            if reply.get("tool_calls") or (isinstance(content, str) and content.strip()):
                break
        else:
            raise EndpointError(
                "user simulator returned an empty reply (no text, no tool calls) "
                f"{config.user_empty_retries + 1} times"
            )
        calls, error = tool_calls_from_openai(
            reply.get("tool_calls"), requestor="user", id_prefix=f"user_call_{self.usage['calls']}"
        )
        if error is not None:
            raise EndpointError(f"user simulator sent a malformed tool call: {error}")
        self.messages.append(_own_turn(content, calls))
        return t.UserMessage(
            role="user",
            content=content,
            tool_calls=calls or None,
            usage={k: usage.get(k) for k in ("prompt_tokens", "completion_tokens") if k in usage}
            or None,
            cost=float(usage.get("cost") or 0.0),
        )

    async def close(self) -> None:
        return None


def _own_turn(content: str | None, calls: Any) -> dict[str, Any]:
    """The user's own turn as the model sees it again (role "assistant"), encoded as tau2 does:
    no ``content`` key when the turn is only tool calls, arguments as ASCII-escaped JSON."""
    entry: dict[str, Any] = {"role": "assistant"}
    if content is not None or not calls:
        entry["content"] = content or ""
    if calls:
        entry["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in calls
        ]
    return entry
