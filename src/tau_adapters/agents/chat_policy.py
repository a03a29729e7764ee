"""A policy behind an OpenAI-compatible ``/v1/chat/completions`` endpoint (text level).

For hosted APIs and for evaluating any served model. Text-level episodes have no token transcript
(the server tokenizes), and say so in their output (``token_level: false``).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from tau_adapters.agents.engines import OpenAIChatClient, require_url, shielded
from tau_adapters.agents.oracle import MalformedTurn
from tau_adapters.agents.thunderagent import ProgramLease
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains.tau2.api import api
from tau_adapters.errors import ConfigError, EpisodeTruncated
from tau_adapters.runtime.http_client import RetryPolicy
from tau_adapters.tokens.chat_messages import to_chat, tool_calls_from_openai


class OpenAIChatPolicy:
    """Chat completions with tools; the server parses tool calls.

    With ``thunderagent`` every request carries the episode's ``program_id`` (top-level body
    field, as ThunderAgent's ``main`` reads it) and the program is released once in `close`."""

    token_level = False
    transcript = None

    def __init__(
        self,
        url: str,
        config: EpisodeConfig,
        *,
        client: OpenAIChatClient | None = None,
        episode_id: str | None = None,
    ):
        if not config.model:
            raise ConfigError("an OpenAI-compatible policy needs `model` (CLI: --model NAME)")
        self.config = config
        self.client = client or OpenAIChatClient(
            url,
            api_key=os.environ.get("OPENAI_API_KEY"),
            retry=RetryPolicy(attempts=config.request_attempts, timeout_s=config.request_timeout_s),
        )
        self.messages: list[dict[str, Any]] = []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.turns = 0
        self.episode_id = episode_id or f"tau-{uuid.uuid4().hex}"
        self.program = (
            ProgramLease(self.client.base_url, self.episode_id) if config.thunderagent else None
        )
        #: Merged into the trajectory's counts (the program's release outcome).
        self.counts: dict[str, int] = {}

    async def start(self, context: Any) -> None:
        self.context = context
        self.messages = [{"role": "system", "content": context.system_prompt}]

    async def act(self, observation: list[Any]) -> Any:
        t = api()
        config = self.config
        self.messages.extend(to_chat(observation, arguments_as_text=True))
        payload: dict[str, Any] = {
            "model": config.model,
            "messages": self.messages,
            "tools": self.context.tools,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_tokens": config.max_new_tokens,
        }
        if config.solo_mode:
            payload["tool_choice"] = "required"  # as tau2's solo agent asks
        body = await self.client.complete(payload, program=self.program)
        self.turns += 1
        usage = body.get("usage") or {}
        for key in self.usage:
            self.usage[key] += int(usage.get(key) or 0)
        try:
            choice = body["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            return MalformedTurn(
                text=json.dumps(body)[:2000], error="answer has no choices[0].message"
            )
        if choice.get("finish_reason") == "length":
            raise EpisodeTruncated("the model turn hit max_tokens")
        content = message.get("content") or None
        calls, error = tool_calls_from_openai(
            message.get("tool_calls"), requestor="assistant", id_prefix=f"call_{self.turns}"
        )
        if error is not None:
            return MalformedTurn(text=json.dumps(message.get("tool_calls"))[:2000], error=error)
        entry: dict[str, Any] = {"role": "assistant", "content": content or ""}
        if message.get("tool_calls"):
            entry["tool_calls"] = message["tool_calls"]
        self.messages.append(entry)
        return t.AssistantMessage(
            role="assistant", content=content, tool_calls=calls or None, usage=usage or None
        )

    async def close(self) -> None:
        """Release the ThunderAgent program (once, even if the host cancels us meanwhile)."""
        if self.program is not None:
            await shielded(self.program.release())
            self.counts.update(self.program.counts())


def make_chat_policy(arg: str | None, config: EpisodeConfig) -> OpenAIChatPolicy:
    """``openai:URL``: an OpenAI-compatible chat endpoint plays the agent (text level)."""
    return OpenAIChatPolicy(require_url("openai", arg), config)
