"""The LLM user simulator: a model plays the customer, as in tau2.

Same role as tau2's `UserSimulator`: tau2's simulation guidelines plus the task's user scenario as
the system prompt, the conversation shown with roles flipped (the agent speaks as "user"), the same
stop signals, and in telecom the user's own tools (the session executes them on the user-side state
and feeds the results back). Two transports: litellm (any provider) and a plain OpenAI-compatible
endpoint (a local SGLang/vLLM server) with no litellm in the path.

Never blocks the event loop (both transports are async), limits concurrent calls per endpoint,
retries timeouts, 429, 5xx and connection errors with backoff, and after the last attempt raises
`EndpointError`, which the session turns into a ``user_error`` termination with the reason.

Pinning: the episode's seed is sent with every request (a re-run asks the same thing), the user's
fingerprint (`tau_adapters.users.fingerprint`) goes into the row, and with ``user_cache`` set the
transport answers from an on-disk cache of earlier replies (`tau_adapters.users.cache`).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains.names import benchmark_for
from tau_adapters.domains.tau2.api import api
from tau_adapters.errors import EndpointError
from tau_adapters.tokens.chat_messages import tool_calls_from_openai
from tau_adapters.users.cache import CachedTransport, open_cache
from tau_adapters.users.fingerprint import tau2_prompt_material, user_fingerprint
from tau_adapters.users.transport import endpoint_limit, make_transport, new_usage, record_usage


class LLMUser:
    """A per-episode LLM user; one instance per episode (it keeps the conversation)."""

    def __init__(self, transport: Any, config: EpisodeConfig) -> None:
        self.transport = transport
        self.config = config
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] | None = None
        self.usage: dict[str, Any] = new_usage(isinstance(transport, CachedTransport))
        self.benchmark = benchmark_for(config.domain).name
        if isinstance(transport, CachedTransport):
            transport.bind(self._fingerprint)
        self.seed: int | None = None
        self.fingerprint: dict[str, Any] | None = None

    async def start(self, context: Any, history: list[Any]) -> None:
        self.fingerprint = await self._fingerprint()
        tools = list(context.user_tools or [])
        self.tools = tools or None
        prompt = api().user_system_prompt(context.task, with_tools=bool(tools))
        self.messages = [{"role": "system", "content": prompt}]
        self.seed = context.seed
        for message in history:
            self.messages.extend(_incoming(message))

    def suspend_state(self) -> dict[str, Any]:
        """The conversation so far (JSON): `restore` continues it without a model call."""
        return {
            "kind": "llm",
            "messages": [dict(m) for m in self.messages],
            "usage": dict(self.usage),
            "seed": self.seed,
            "fingerprint": self.fingerprint,
        }

    def restore(self, context: Any, state: dict[str, Any]) -> None:
        if state.get("kind") != "llm":
            raise ValueError(f"cannot restore an LLM user from {state.get('kind')!r} state")
        self.tools = list(context.user_tools or []) or None
        self.messages = [dict(m) for m in state["messages"]]
        self.usage = dict(state["usage"])
        self.seed = state["seed"]
        self.fingerprint = state.get("fingerprint")

    async def _fingerprint(self) -> dict[str, Any]:
        transport = getattr(self.transport, "inner", self.transport)
        return await user_fingerprint(transport, self.config, self.benchmark, tau2_prompt_material)

    async def respond(self, message: Any) -> Any:
        t = api()
        # Kept only once the reply is in: a call the host cancels leaves the conversation as it
        # was, so a suspended episode's user state never holds half a turn.
        incoming = _incoming(message)
        config = self.config
        payload: dict[str, Any] = {
            "messages": [*self.messages, *incoming],
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
            async with endpoint_limit(self.transport.key, config.user_concurrency):
                reply, usage = await self.transport.complete(payload)
            cost = record_usage(self.usage, usage)
            content = reply.get("content") or None
            if reply.get("tool_calls") or (isinstance(content, str) and content.strip()):
                break
        else:
            raise EndpointError(
                "user simulator returned an empty reply (no text, no tool calls) "
                f"{config.user_empty_retries + 1} times"
            )
        answered = self.usage["calls"] + self.usage.get("cache_hits", 0)
        calls, error = tool_calls_from_openai(
            reply.get("tool_calls"), requestor="user", id_prefix=f"user_call_{answered}"
        )
        if error is not None:
            raise EndpointError(f"user simulator sent a malformed tool call: {error}")
        self.messages.extend(incoming)
        self.messages.append(_own_turn(content, calls))
        return t.UserMessage(
            role="user",
            content=content,
            tool_calls=calls or None,
            usage={k: usage.get(k) for k in ("prompt_tokens", "completion_tokens") if k in usage}
            or None,
            cost=cost,
        )

    async def close(self) -> None:
        return None


def _incoming(message: Any) -> list[dict[str, Any]]:
    """What the user model is shown for one message of the conversation."""
    role = getattr(message, "role", None)
    if role == "assistant" and message.content:
        return [{"role": "user", "content": message.content}]
    if role == "tool":
        return [
            {"role": "tool", "tool_call_id": sub.id, "content": sub.content or ""}
            for sub in getattr(message, "tool_messages", None) or [message]
        ]
    if role == "user":  # the user's own earlier words (task history)
        return [_own_turn(message.content, message.tool_calls)]
    return []


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


def _llm_user(kind: str, arg: str | None, config: EpisodeConfig) -> Any:
    transport: Any = make_transport(kind, arg, config)
    if config.user_cache:  # opened (and checked: corrupt, foreign) on the first episode's build
        transport = CachedTransport(transport, open_cache(config.user_cache))
    factory = benchmark_for(config.domain).user_factory  # tau-bench v1 plays its own strategies
    if factory is not None:
        module, _, attr = factory.partition(":")
        return getattr(importlib.import_module(module), attr)(transport, config)
    return LLMUser(transport, config)


def make_litellm_user(arg: str | None, config: EpisodeConfig) -> Any:
    """``litellm:MODEL``: any litellm provider plays the user."""
    return _llm_user("litellm", arg, config)


def make_openai_user(arg: str | None, config: EpisodeConfig) -> Any:
    """``openai:URL`` (with ``--user-model``): an OpenAI-compatible endpoint plays the user."""
    return _llm_user("openai", arg, config)
