"""An episode the host drives one model turn at a time, as text (SkyRL-style environments).

Some hosts own the generation loop: they render the chat, sample the model, and hand the
environment the raw text of each turn, expecting the next observation back as chat messages.
`TextEpisode` serves such hosts without a second copy of the episode rules: it runs the core
`rollout` itself, with a policy whose turns come from the host. Parsing (the configured parser),
malformed turns (``on_malformed``), budgets, user and environment failures, scoring and reward
shaping are therefore exactly the ones every other host gets, and a seeded episode gives the same
messages and reward whichever way it is driven.

The host never passes ``tools=`` to its chat template, so the system prompt carries the domain
policy, the parser's call format and the tool schemas (`text_system_prompt`).

All methods are coroutines; synchronous hosts run them on `tau_adapters.runtime.background_loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from tau_adapters.agents.oracle import MalformedTurn, assistant_message_from
from tau_adapters.config import EpisodeConfig
from tau_adapters.episode.tasks import TaskRef
from tau_adapters.errors import EpisodeSignal, HostStopped, HostTurnLimit
from tau_adapters.runtime import background_loop
from tau_adapters.runtime.logs import get_logger
from tau_adapters.tokens.chat_messages import to_chat

log = get_logger("tau_adapters.episode")

__all__ = [
    "HostStopped",
    "HostTurnLimit",
    "TextEpisode",
    "TextTurn",
    "oracle_texts",
    "render_turn",
    "text_system_prompt",
    "turns_needed",
]


@functools.cache
def text_system_prompt(domain: str, parser_spec: str) -> str:
    """The system prompt for a host that renders chats without ``tools=``: the benchmark's agent
    prompt (tau2's around the domain policy; v1's wiki), then how to call tools in the parser's
    format, then the schemas."""
    from tau_adapters.domains import get_domain

    backend = get_domain(domain)
    return text_prompt(backend.agent_system_prompt(), backend.tool_schemas, parser_spec)


def text_prompt(system_prompt: str, tools: list[dict[str, Any]], parser_spec: str) -> str:
    """An agent prompt with the parser's call format and `tools`' schemas written into it."""
    from tau_adapters.plugins import make_parser

    parser = make_parser(parser_spec, tools)
    schemas = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return "\n\n".join(
        [
            system_prompt,
            parser.format_instruction(),
            f"# Tools\nYou can call these tools (OpenAI function schemas):\n{schemas}",
        ]
    )


def render_turn(message: Any, parser: Any) -> str:
    """The text a model would write for a tau2 `AssistantMessage` in `parser`'s format (the
    inverse of parsing; used to replay known episodes as text, e.g. the oracle's)."""
    parts = [message.content] if message.content else []
    parts.extend(parser.render_call(c.name, dict(c.arguments)) for c in message.tool_calls or [])
    return "\n".join(parts)


def oracle_texts(task: Any, parser_spec: str = "hermes", *, solo: bool = False) -> list[str]:
    """The oracle policy's turns for `task` as model text in the parser's format, ending with the
    stop token: with the scripted user they score 1.0 through any text host (calibration); with
    `solo`, tau2's solo oracle (the gold actions as calls, then a call to ``done``)."""
    from types import SimpleNamespace

    from tau_adapters.agents.oracle import OraclePolicy
    from tau_adapters.core import AGENT_STOP_TOKEN
    from tau_adapters.plugins import make_parser

    parser = make_parser(parser_spec)
    oracle = OraclePolicy()

    async def plan() -> list[str]:
        await oracle.start(SimpleNamespace(task=task, config=SimpleNamespace(solo_mode=solo)))
        texts: list[str] = []
        while True:
            message = await oracle.act([])
            if message.content == AGENT_STOP_TOKEN:
                return [*texts, AGENT_STOP_TOKEN]
            texts.append(render_turn(message, parser))

    # The oracle never awaits anything real: drive it without a loop (callable from async code).
    coro = plan()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the oracle policy awaited I/O")


def turns_needed(task: Any) -> int:
    """Model turns a perfect episode of `task` takes at least: one per gold action, the closing
    message, and the stop (what the oracle policy sends). A host turn limit below this cuts every
    episode of the task before it can succeed."""
    criteria = getattr(task, "evaluation_criteria", None)
    actions = (criteria.actions or []) if criteria is not None else []
    return len(actions) + 2


@dataclass
class TextTurn:
    """What the host gets back for one model turn."""

    observation: list[dict[str, Any]]
    done: bool
    trajectory: Any | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


_STOP = object()


class _HostPolicy:
    """The rollout's policy: hands each observation to the host, parses the text it sends back."""

    token_level = False
    transcript = None

    def __init__(self, parser: Any, max_turns: int | None) -> None:
        self.parser = parser
        self.max_turns = max_turns
        self.turns = 0
        self.context: Any = None
        self.outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def start(self, context: Any) -> None:
        self.context = context

    async def act(self, observation: list[Any]) -> Any:
        if self.max_turns is not None and self.turns >= self.max_turns:
            raise HostTurnLimit(f"the host's turn limit was reached (max_turns={self.max_turns})")
        await self.outbox.put(("turn", observation))
        text = await self.inbox.get()
        if text is _STOP:
            raise HostStopped("the host stopped the episode before it ended")
        self.turns += 1
        parsed = self.parser.parse(text)
        if parsed.malformed:
            return MalformedTurn(text=text, error=parsed.error or "malformed tool call")
        return assistant_message_from(parsed, text, turn=self.turns)

    async def close(self) -> None:
        return None


class TextEpisode:
    """One episode of `ref`, driven by the host's text turns. Never raises for episode faults."""

    def __init__(
        self,
        ref: TaskRef,
        config: EpisodeConfig,
        *,
        trial: int = 0,
        user: Any | None = None,
        max_turns: int | None = None,
    ) -> None:
        self.ref = ref
        self.config = config.model_copy(update={"domain": ref.domain, "split": ref.split})
        self.trial = trial
        self.user = user
        self.max_turns = max_turns
        self.trajectory: Any | None = None
        self._policy: _HostPolicy | None = None
        self._task: asyncio.Task[Any] | None = None

    @property
    def done(self) -> bool:
        return self.trajectory is not None

    def system_prompt(self) -> str:
        return text_system_prompt(self.ref.domain, self.config.parser)

    async def start(self) -> list[dict[str, Any]]:
        """The chat the model sees first: the system prompt and the opening exchange. If the
        episode cannot start (task, environment, user simulator), it is already finished."""
        from tau_adapters.episode.rollout import rollout
        from tau_adapters.plugins import make_parser, make_user

        system = {"role": "system", "content": self.system_prompt()}
        try:
            task = self.ref.load()
            parser = make_parser(self.config.parser)
            user = self.user
            if user is None and not self.config.solo_mode:  # solo: rollout's SoloUser
                user = make_user(self.config.user, self.config)
        except Exception as exc:  # a dataset row naming a task that does not exist, and the like
            self.trajectory = _unstarted(self.ref, self.trial, self.config, exc)
            return [system]
        self._policy = _HostPolicy(parser, self.max_turns)
        self._task = asyncio.ensure_future(
            rollout(
                task,
                self.config,
                policy=self._policy,
                user=user,
                trial=self.trial,
                split=self.ref.split,
                on_cancel="return",
            )
        )
        policy = self._policy
        turn = await self._next()
        context = policy.context
        if context is not None and (self.config.solo_mode or self.config.add_thinking_tool):
            # The prompt depends on the episode (solo: the ticket; both: the tool list).
            system["content"] = text_prompt(
                context.system_prompt, context.tools, self.config.parser
            )
        return [system, *turn.observation]

    async def step(self, text: str) -> TextTurn:
        """Deliver the model's text; the observation that follows, or the end of the episode."""
        if self.done or self._policy is None:
            return TextTurn([], True, self.trajectory)
        await self._policy.inbox.put(text if isinstance(text, str) else _as_text(text))
        return await self._next()

    async def stop(self) -> Any:
        """End an unfinished episode from the host side (truncated); returns the trajectory."""
        if not self.done and self._policy is not None:
            await self._policy.inbox.put(_STOP)
            await self._next()
        return self.trajectory

    async def cancel(self) -> None:
        """Drop the episode without waiting for it (the host is going away)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _next(self) -> TextTurn:
        assert self._policy is not None and self._task is not None
        getter = asyncio.ensure_future(self._policy.outbox.get())
        await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            _, observation = getter.result()
            return TextTurn(to_chat(observation, arguments_as_text=True), False)
        getter.cancel()
        try:
            self.trajectory = self._task.result()
        except BaseException as exc:  # rollout never raises for episode faults; be sure anyway
            self.trajectory = _unstarted(self.ref, self.trial, self.config, exc)
        self._policy = None  # the episode is over: let its queues and session go
        return TextTurn([], True, self.trajectory)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _unstarted(ref: TaskRef, trial: int, config: EpisodeConfig, exc: BaseException) -> Any:
    """A failed trajectory for an episode that could not run at all."""
    from tau_adapters.episode.rollout import Trajectory

    reason = str(exc) if isinstance(exc, EpisodeSignal) else repr(exc)
    return Trajectory.failed(
        ref.domain,
        ref.split,
        ref.task_id,
        trial=trial,
        seed=config.seed + trial,
        error=f"episode could not start: {reason}",
    )


class SyncTextEpisode:
    """A `TextEpisode` for hosts that call from threads (SkyRL's env workers): each call runs on
    the process's background event loop under a deadline, one call at a time, and none raises.
    An episode that breaks (start, step, a deadline) is cancelled and ends ``failed`` with the
    reason in `failure`; `trajectory` is the finished episode otherwise."""

    def __init__(
        self,
        ref: TaskRef,
        config: EpisodeConfig,
        *,
        trial: int = 0,
        max_turns: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.ref = ref
        self.config = config
        # One user-simulator exchange with all its retries, plus the environment: a step that
        # takes longer is stuck, not slow.
        self.timeout_s = timeout_s or config.user_timeout_s * config.user_attempts + 60.0
        self.trajectory: Any | None = None
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._started = False
        self._episode: TextEpisode | None = TextEpisode(
            ref, config, trial=trial, max_turns=max_turns
        )

    @property
    def finished(self) -> bool:
        return self.trajectory is not None or self.failure is not None

    def start(self) -> list[dict[str, Any]] | None:
        """The opening chat, or None when the episode could not start (see `failure`)."""
        with self._lock:
            episode = self._episode
            if episode is None or self.finished:
                return None
            self._started = True
            try:
                messages = background_loop.call(episode.start(), self.timeout_s)
            except Exception as exc:
                self._break(episode, f"episode start failed: {exc!r}")
                return None
            if episode.done:
                self._end(episode.trajectory)
            return messages

    def step(self, text: str) -> list[dict[str, Any]] | None:
        """The observation after the model's `text`, or None once the episode has ended."""
        with self._lock:
            episode = self._episode
            if episode is None or self.finished or not self._started:
                if not self.finished:
                    self.failure = "step() before start()"
                    self._episode = None
                return None
            try:
                turn = background_loop.call(episode.step(text), self.timeout_s)
            except Exception as exc:
                self._break(episode, f"environment step failed: {exc!r}")
                return None
            if not turn.done:
                return turn.observation
            self._end(turn.trajectory)
            return None

    def finish(self) -> None:
        """End an unfinished episode from the host's side (truncated), e.g. at its length cap."""
        with self._lock:
            episode = self._episode
            if episode is None or self.finished:
                return
            try:
                self._end(background_loop.call(episode.stop(), self.timeout_s))
            except Exception as exc:
                self._break(episode, f"ending the episode failed: {exc!r}")

    def _end(self, trajectory: Any) -> None:
        self.trajectory = trajectory
        self._episode = None  # keeps RSS flat: the session, its env and queues go with it

    def _break(self, episode: TextEpisode, reason: str) -> None:
        try:
            background_loop.call(episode.cancel(), 30.0)
        except Exception as exc:  # best effort: the episode is failed either way
            log.warning("could not cancel an episode: %r", exc)
        self.failure = reason
        self._episode = None
        log.warning(
            "episode %s/%s failed (not trained on): %s", self.ref.domain, self.ref.task_id, reason
        )
