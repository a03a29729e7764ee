"""A policy served by SGLang's ``/generate``: token ids in, token ids and logprobs out.

The prompt and each observation are tokenized with the chat template (observations as deltas);
the model's tokens are kept exactly as the engine returned them (`Transcript`). Budgets: per-turn
``max_new_tokens``, the episode's ``max_response_tokens`` and ``max_context_tokens``; running out
raises `EpisodeTruncated` with the transcript intact (an observation that would not fit is not
added).
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

from tau_adapters.agents.engines import SGLangClient, require_url, shielded
from tau_adapters.agents.oracle import MalformedTurn, assistant_message_from
from tau_adapters.agents.thunderagent import ProgramLease
from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import ConfigError, EpisodeAborted, EpisodeSuspended, EpisodeTruncated
from tau_adapters.runtime.gc_hygiene import freeze_long_lived
from tau_adapters.runtime.http_client import RetryPolicy
from tau_adapters.runtime.scheduling import run_cpu
from tau_adapters.tokens.chat_messages import openai_tool_calls, to_chat
from tau_adapters.tokens.chat_template import ChatTemplate
from tau_adapters.tokens.template_probe import check_system_only_opening, probe_template
from tau_adapters.tokens.transcript import Transcript


@functools.cache
def load_template(
    tokenizer_spec: str, template_path: str | None = None, template_kwargs_json: str = "{}"
) -> ChatTemplate:
    """Tokenizer + chat template, loaded once per process and spec."""
    import copy
    from pathlib import Path

    from tau_adapters.tokens.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(tokenizer_spec)
    name = tokenizer_spec
    if template_path:
        path = Path(template_path)
        if not path.is_file():
            raise ConfigError(f"chat_template file {template_path!r} does not exist")
        tokenizer = copy.copy(tokenizer)
        tokenizer.chat_template = path.read_text(encoding="utf-8")
        name = f"{tokenizer_spec} with {path.name}"
    template = ChatTemplate(tokenizer, template_kwargs=json.loads(template_kwargs_json), name=name)
    # Prove that deltas equal a full render for this template before any episode runs; a
    # template that no delta strategy makes exact is refused here with its name and the reason.
    probe_template(template)
    freeze_long_lived()  # transformers and the tokenizer: keep them out of every GC pass
    return template


def template_for(config: EpisodeConfig) -> ChatTemplate:
    if not config.tokenizer:
        raise ConfigError(
            "token-level policies need a tokenizer: set `tokenizer` (CLI: --tokenizer PATH, a local "
            "Hugging Face tokenizer folder, or local:chatml for the built-in test tokenizer)"
        )
    template = load_template(
        config.tokenizer,
        config.chat_template,
        json.dumps(config.chat_template_kwargs, sort_keys=True),
    )
    if config.solo_mode and not config.solo_ticket_as_user:
        check_system_only_opening(template)  # tau2's solo prompt has no user turn
    return template


def short_call_ids(calls: list[Any], parsed: Any, turn: int) -> list[Any]:
    """Calls with the 9-character alphanumeric ids Mistral templates demand: the id the model
    wrote when it is one, else one made from the turn and position (unique in the episode)."""
    out = []
    for index, call in enumerate(calls):
        written = parsed.tool_calls[index].id if index < len(parsed.tool_calls) else None
        valid = isinstance(written, str) and len(written) == 9 and written.isalnum()
        ident = written if valid else f"{turn % 100000:05d}{index % 10000:04d}"
        out.append(call.model_copy(update={"id": ident}))
    return out


def structured_turn(parsed: Any, calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A parsed turn as the fields harmony-style templates render (reasoning as ``thinking``;
    such templates refuse content and thinking together on a tool-call turn)."""
    turn: dict[str, Any] = {"role": "assistant", "content": parsed.content or ""}
    if parsed.reasoning:
        turn["thinking"] = parsed.reasoning
    if calls:
        turn["tool_calls"] = calls
        if parsed.reasoning:
            turn["content"] = ""
    return turn


def system_text(context: Any, parser: Any, template: ChatTemplate | None) -> str:
    """The system prompt plus the parser's format instruction (and the tool schemas when the
    template cannot take ``tools=``)."""
    parts = [context.system_prompt, parser.format_instruction()]
    if template is not None and not template.supports_tools:
        schemas = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in context.tools)
        parts.append(f"# Tools\n{schemas}")
    return "\n\n".join(part for part in parts if part)


class TokenPolicy:
    """Token-in/token-out agent against an SGLang-protocol endpoint."""

    token_level = True

    def __init__(
        self,
        url: str,
        config: EpisodeConfig,
        *,
        template: ChatTemplate | None = None,
        client: SGLangClient | None = None,
        parser: Any = None,
        sampling: dict[str, Any] | None = None,
        episode_id: str | None = None,
    ) -> None:
        from tau_adapters.plugins import make_parser

        self.config = config
        self.template = template or template_for(config)
        self.client = client or SGLangClient(
            url,
            retry=RetryPolicy(attempts=config.request_attempts, timeout_s=config.request_timeout_s),
            session_routing=config.session_routing,
        )
        self._parser_spec = config.parser
        self.parser = parser or make_parser(config.parser)
        #: Host sampling parameters passed through (top_k, sampling_seed, stop, ...); the policy
        #: owns max_new_tokens (budgets) and adds the template's stop tokens.
        self.extra_sampling = dict(sampling or {})
        self.episode_id = episode_id or f"tau-{uuid.uuid4().hex}"
        self.transcript: Transcript | None = None
        self.generations = 0
        self._previous_calls: list[dict[str, Any]] | None = None
        #: Per model turn, SGLang's top-p replay data when the host asked for it (else None).
        self.top_p_turns: list[tuple[list[int], list[int]] | None] = []
        #: ThunderAgent: this episode's program (its id is the episode id), released in close().
        self.program = (
            ProgramLease(self.client.base_url, self.episode_id) if config.thunderagent else None
        )
        #: Merged into the trajectory's counts (the program's release outcome).
        self.counts: dict[str, int] = {}
        #: Set by the rollout when the host can resume episodes: an engine ``abort`` then keeps
        #: the turn's tokens (`partial`) and suspends the episode instead of ending it.
        self.suspendable = False
        #: The model turn in progress: its observation is in the transcript and these tokens
        #: came back before an abort (ids, logprobs, top-p ids and offsets, or None).
        self.partial: dict[str, Any] | None = None

    def request_extras(self) -> dict[str, Any]:
        """Per-request payload additions (override in subclasses, e.g. forced outputs in tests)."""
        return {}

    async def start(self, context: Any) -> None:
        self.context = context
        tools = context.tools if self.template.supports_tools else None
        self.transcript = Transcript(self.template, tools=tools)

    async def act(self, observation: list[Any]) -> Any:
        transcript = self.transcript
        assert transcript is not None, "start() first"
        if self.partial is None:
            sampling = await run_cpu(self._prepare, observation)
            self.partial = {"ids": [], "logprobs": [], "top_p": None}
        else:  # resumed mid-turn: the observation is already in the transcript
            sampling = self._sampling()
        partial = self.partial
        turn_max = sampling["max_new_tokens"]
        finish = "length"
        stops = set(sampling["stop_token_ids"])
        if partial["ids"] and partial["ids"][-1] in stops:
            finish = "stop"  # an abort that came after the turn's last token: nothing left
        while finish != "stop" and len(partial["ids"]) < turn_max:
            # The continuation asks for what the turn has left (slime's max_new_tokens minus
            # the response so far, AReaL's max_new_tokens minus what came back).
            request = {**sampling, "max_new_tokens": turn_max - len(partial["ids"])}
            generation = await self.client.generate(
                transcript.ids.tolist() + partial["ids"],
                request,
                episode_id=self.episode_id,
                extra=self.request_extras(),
                program=self.program,
            )
            _extend_partial(partial, generation)
            finish = generation.finish_reason
            if finish != "abort":
                break
            if self.suspendable:
                raise EpisodeSuspended(
                    f"the engine aborted the generation after {len(partial['ids'])} tokens",
                    where="policy",
                )
            break
        self.partial = None
        self.generations += 1
        text, parsed = await run_cpu(self._absorb, partial, finish, turn_max)
        if parsed.malformed:
            self._previous_calls = None
            if self.template.structured_history and self.transcript is not None:
                self.transcript.record_turn(structured_turn(parsed, None))
            return MalformedTurn(text=text, error=parsed.error or "malformed tool call")
        message = assistant_message_from(parsed, text, turn=self.generations)
        if self.template.short_call_ids and message.tool_calls:
            message.tool_calls = short_call_ids(message.tool_calls, parsed, self.generations)
        self._previous_calls = openai_tool_calls(message.tool_calls) if message.tool_calls else None
        if self.template.structured_history and self.transcript is not None:
            self.transcript.record_turn(structured_turn(parsed, self._previous_calls))
        return message

    def _absorb(self, partial: dict[str, Any], finish: str, max_new: int) -> tuple[str, Any]:
        """Append the sampled tokens verbatim; the turn's text and its parse."""
        assert self.transcript is not None
        text = self.transcript.append_model(partial["ids"], partial["logprobs"])
        off = int(partial.get("off_policy", 0))
        if off:  # the host masks what was sampled before a suspension (slime's off-policy mask)
            span = next(s for s in reversed(self.transcript.spans) if s.kind == "model")
            for i in range(span.start, span.start + off):
                self.transcript.loss_mask[i - self.transcript.prompt_len] = 0
        top_p = partial["top_p"]
        self.top_p_turns.append((top_p[0], top_p[1]) if top_p is not None else None)
        if finish == "abort":
            raise EpisodeAborted("the engine aborted the generation", turn_taken=True)
        if finish == "length":
            raise EpisodeTruncated(
                f"the model turn hit the token limit ({max_new} new tokens)", turn_taken=True
            )
        return text, self.parser.parse(text)

    # -- suspension (issue 23) -----------------------------------------------------------------
    def suspend_state(self) -> dict[str, Any]:
        """This policy's part of an episode snapshot (JSON)."""
        return {
            "kind": "sglang",
            "episode_id": self.episode_id,
            "generations": self.generations,
            "previous_calls": self._previous_calls,
            "top_p_turns": [list(t) if t is not None else None for t in self.top_p_turns],
            "transcript": self.transcript.state() if self.transcript is not None else None,
            "partial": self.partial,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `suspend_state()` (after `start()`, which set the tools)."""
        if state.get("kind") != "sglang":
            raise ValueError(f"cannot restore an SGLang policy from {state.get('kind')!r} state")
        self.episode_id = state["episode_id"]
        if self.program is not None:
            self.program = ProgramLease(self.client.base_url, self.episode_id)
        self.generations = int(state["generations"])
        self._previous_calls = state["previous_calls"]
        self.top_p_turns = [tuple(t) if t is not None else None for t in state["top_p_turns"]]
        if state["transcript"] is not None:
            tools = self.context.tools if self.template.supports_tools else None
            self.transcript = Transcript.from_state(self.template, tools, state["transcript"])
        self.partial = state["partial"]

    def _prepare(self, observation: list[Any]) -> dict[str, Any]:
        """Add the observation to the transcript; the sampling parameters for the next call."""
        transcript = self.transcript
        assert transcript is not None
        if not transcript.ids:
            system = {
                "role": "system",
                "content": system_text(self.context, self.parser, self.template),
            }
            # Templates that need the user to speak first get tau2's greeting in the system
            # message (`ChatTemplate.opening_messages`).
            transcript.start(self.template.opening_messages([system, *to_chat(observation)]))
            self._check_budget(0)
        else:
            messages = to_chat(observation)
            delta = transcript.observation_ids(messages, self._previous_calls)
            self._check_budget(len(delta))
            transcript.append_observation(messages, delta)
        return self._sampling()

    def _sampling(self) -> dict[str, Any]:
        """The sampling parameters for the model turn the transcript ends with (budgets from
        what the transcript holds before the turn's first token)."""
        transcript = self.transcript
        assert transcript is not None
        config = self.config
        max_new = config.max_new_tokens
        # A turn cut at its length gets the template's end-of-turn token appended (not sampled,
        # mask 0): one token is kept free for it, so the budgets are hard limits.
        if config.max_response_tokens is not None:
            max_new = min(max_new, config.max_response_tokens - transcript.response_length - 1)
        if config.max_context_tokens is not None:
            max_new = min(max_new, config.max_context_tokens - len(transcript.ids) - 1)
        if max_new <= 0:
            raise EpisodeTruncated("token budget exhausted before the model could answer")
        extra = self.extra_sampling
        stop_ids = set(self.template.stop_ids) | set(extra.get("stop_token_ids") or [])
        sampling = {
            "temperature": config.temperature,
            "top_p": config.top_p,
            **{k: v for k, v in extra.items() if v is not None},
            "max_new_tokens": max_new,
            "stop_token_ids": sorted(stop_ids),
            "skip_special_tokens": False,
            "no_stop_trim": True,
        }
        return sampling

    def _check_budget(self, extra: int) -> None:
        """Refuse to add `extra` tokens unless one sampled token and the end-of-turn token that
        may close it still fit (else the transcript would end on an observation)."""
        transcript = self.transcript
        assert transcript is not None
        config = self.config
        extra += 1
        if (
            config.max_response_tokens is not None
            and transcript.response_length + extra >= config.max_response_tokens
        ):
            raise EpisodeTruncated(
                f"response-token budget of {config.max_response_tokens} exhausted"
            )
        if (
            config.max_context_tokens is not None
            and len(transcript.ids) + extra >= config.max_context_tokens
        ):
            raise EpisodeTruncated(f"context limit of {config.max_context_tokens} tokens reached")

    async def close(self) -> None:
        """Release the ThunderAgent program (once, even if the host cancels us meanwhile)."""
        if self.program is not None:
            await shielded(self.program.release())
            self.counts.update(self.program.counts())


def _extend_partial(partial: dict[str, Any], generation: Any) -> None:
    """Add one engine answer to the turn's tokens (top-p offsets shifted past earlier parts)."""
    top_p = generation.top_p_tokens()
    if top_p is not None or (partial["top_p"] is not None and generation.ids):
        kept, offsets = top_p if top_p is not None else ([], [0] * (len(generation.ids) + 1))
        have = partial["top_p"] or [[], [0] * (len(partial["ids"]) + 1)]
        base = len(have[0])
        partial["top_p"] = [have[0] + list(kept), have[1] + [base + o for o in offsets[1:]]]
    partial["ids"] = partial["ids"] + list(generation.ids)
    partial["logprobs"] = partial["logprobs"] + [float(x) for x in generation.logprobs]


def make_token_policy(arg: str | None, config: EpisodeConfig) -> TokenPolicy:
    """``sglang:URL``: token ids in, token ids out, against an SGLang-protocol ``/generate``."""
    return TokenPolicy(require_url("sglang", arg), config)
