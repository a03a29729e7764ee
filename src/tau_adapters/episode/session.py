"""One episode at the message level: tau2's orchestration rules as an async state machine.

The session owns the environment, the user simulator and the full trajectory (tau2 `Message`
objects). The agent side is driven from outside: `start()` returns what the agent sees first,
`step(assistant_message)` returns what comes back (tool results, or the user's reply), until `done`.
Step counting, the max-steps / max-errors rule and the termination reasons follow tau2's
`Orchestrator`; failures of the user or the environment end the episode with a reason instead of
raising.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.core import AGENT_STOP_TOKEN, EpisodeContext, Role, StepResult, User
from tau_adapters.domains import get_domain
from tau_adapters.domains.base import TAU2_RULES, Domain, EpisodeRules
from tau_adapters.domains.tau2.solo import (
    THINK_ANSWER,
    THINK_TOOL_NAME,
    THINK_TOOL_SCHEMA,
    solo,
    strip_think,
)
from tau_adapters.errors import ConfigError, EpisodeDoneError
from tau_adapters.runtime.scheduling import run_cpu

if TYPE_CHECKING:
    from tau2.data_model.tasks import Task

#: Our termination reasons that tau2 does not have, and the tau2 reason its scoring is given.
TAU2_TERMINATION_REASON: dict[str, str] = {
    "token_budget": "max_steps",
    "max_turns": "max_steps",
    "host_stopped": "max_steps",
}


@dataclass
class _Counters:
    steps: int = 0
    errors: int = 0
    agent_turns: int = 0
    user_turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    think_calls: int = 0
    dropped_tool_calls: int = 0


class Session:
    """A tau2 episode for one task, with a pluggable user simulator."""

    def __init__(
        self,
        task: Task,
        config: EpisodeConfig,
        user: User,
        *,
        seed: int | None = None,
        domain: Domain | None = None,
    ) -> None:
        self.domain: Any = domain or get_domain(
            config.domain, retrieval_variant=config.retrieval_variant
        )
        self.tau2 = self.domain.tau2
        #: How this benchmark's runner ends an episode (tau2's orchestrator, or v1's runner).
        self.rules: EpisodeRules = getattr(self.domain, "episode_rules", TAU2_RULES)
        self.domain.check_scorable(task, config.judge_model, config.grading)
        #: The NL-assertion judge of this episode (None when its grading calls none).
        self.judge: Any = None
        if config.grading == "official" and self.domain.needs_judge(task):
            from tau_adapters.rewards.judge import make_judge

            self.judge = make_judge(config)
        self.task = task
        self.config = config
        self.user = user
        self.seed = config.seed if seed is None else seed
        self.solo = bool(config.solo_mode)
        if self.solo:
            solo_agent = getattr(self.domain, "solo_agent", None)
            if solo_agent is None:
                raise ConfigError(
                    f"solo_mode: domain {self.domain.name!r} ({self.domain.benchmark}) has no solo "
                    "mode; tau2 offers it for telecom and mock"
                )
            system_prompt, policy, tools = solo_agent(task)
            user_tools: list[dict[str, Any]] = []
        else:
            system_prompt = self.domain.agent_system_prompt(task)
            policy, tools = self.domain.task_policy(task), self.domain.tool_schemas
            # v1 tasks may allow only some user tools (`Task.user_tools`).
            user_tools = self.domain.task_user_tool_schemas(task)
        self.think = bool(config.add_thinking_tool)
        if self.think:
            tools = with_think_tool(tools, self.domain.name, len(self.domain.tool_schemas))
        self.context = EpisodeContext(
            domain=self.domain.name,
            task=task,
            system_prompt=system_prompt,
            policy=policy,
            tools=tools,
            user_tools=user_tools,
            seed=self.seed,
            config=config,
        )
        self.messages: list[Any] = []
        self.done = False
        self.termination_reason: str | None = None
        self.error: str | None = None
        self.status: str | None = None
        self.rejected: list[dict[str, Any]] = []
        self.counters = _Counters()
        self._env: Any = None
        self._pending: Any = None
        self._from: Role | None = None
        self._to: Role | None = None
        self._call_ids = 0
        self._greeting: Any = None
        #: tau2 does not count the solo agent's first message as a step (it is made in set-up).
        self._uncounted_turn = False
        self._think_only = False
        #: Messages that came from the task's history (already applied to the environment).
        self._history_len = 0
        #: The last consistent point inside `_advance` (a user or environment call may be
        #: cancelled half way): what `state()` records when the host cancels mid-call.
        self._checkpoint: tuple[Any, ...] | None = None

    # -- public API ----------------------------------------------------------------------------
    async def start(self) -> list[Any]:
        """Set up the environment and the opening exchange; return what the agent sees first."""
        t = self.tau2
        state = self.task.initial_state
        history = copy.deepcopy(list(state.message_history or [])) if state is not None else []
        try:
            if self.solo:
                self._env = await run_cpu(self.domain.initial_environment, self.task, True)
            else:
                self._env = await run_cpu(self.domain.initial_environment, self.task)
        except Exception as exc:  # a broken task or env: end the episode, don't raise
            self._finish("agent_error", f"environment set-up failed: {exc!r}", "failed")
            return []
        for message in history:
            message.turn_idx = None
            self._append(message)
        self._history_len = len(history)
        if self.solo:
            return self._start_solo(history)
        try:
            await self.user.start(self.context, _user_history(t, history))
        except Exception as exc:
            self._finish("user_error", f"user simulator failed to start: {exc!r}", "failed")
            return []
        if history:
            self._resume_from(history[-1])
        else:
            greeting = t.AssistantMessage(role="assistant", content=t.FIRST_AGENT_MESSAGE, cost=0.0)
            self._append(greeting)
            if not self.domain.agent_sees_greeting:
                self._greeting = greeting
            self._pending, self._from, self._to = greeting, Role.AGENT, Role.USER
        await self._advance()
        return [m for m in self.messages if _agent_visible(m) and m is not self._greeting]

    def _start_solo(self, history: list[Any]) -> list[Any]:
        """tau2's solo start: no user and no greeting; the agent speaks first, having seen only
        its system prompt (and a history of tool calls, if the task has one)."""
        t = self.tau2
        if history:
            self._resume_from(history[-1])
            if not self.done and self._to is not Role.AGENT:
                self._finish("agent_error", "solo task history does not end on the agent's turn")
        else:
            self._to, self._from = Role.AGENT, None
            self._uncounted_turn = True
        observation = [m for m in self.messages if _agent_visible(m)]
        if self.config.solo_ticket_as_user:
            # Not tau2's protocol (opt-in): the ticket as a first user turn the agent sees, kept
            # out of the trajectory, which tau2 refuses to score with a user message in it.
            ticket = t.UserMessage(role="user", content=str(self.task.ticket))
            observation = [ticket, *observation]
        return observation

    async def step(self, message: Any) -> StepResult:
        """Deliver one assistant message; run the user and the environment until it is the agent's
        turn again or the episode ends."""
        if self.done:
            raise EpisodeDoneError("the episode has ended; check `done` before calling step()")
        if self._to is not Role.AGENT:
            raise EpisodeDoneError(f"it is not the agent's turn (next: {self._to})")
        mark = len(self.messages)
        message = self._normalise_agent_message(message)
        self.counters.agent_turns += 1
        if message is None:
            return StepResult([], True, self.termination_reason)
        if self.solo:
            message = self._solo_stop_call(message)
        if self.rules.first_tool_call_only and message.tool_calls and len(message.tool_calls) > 1:
            # v1's runner turns a message into its first tool call and keeps only that call in
            # its history; the others never run and no result answers them.
            self.counters.dropped_tool_calls += len(message.tool_calls) - 1
            message.tool_calls = message.tool_calls[:1]
        self._append(message)
        if self._agent_stops(message):
            self._finish("agent_stop")
        self._pending, self._from = message, Role.AGENT
        self._to = Role.ENV if message.is_tool_call() else Role.USER
        if self.solo and self._to is Role.USER and not self.done:
            # Nobody to talk to: tau2 ends a solo episode on any text that is not a stop.
            self._finish("agent_error", "solo agent sent text instead of tool calls", "completed")
        if self._uncounted_turn:
            self._uncounted_turn = False
        else:
            self._after_step()
        self._sync_env()
        await self._advance()
        observation = [m for m in self.messages[mark + 1 :] if _agent_visible(m)]
        return StepResult(observation, self.done, self.termination_reason)

    def reject(self, text: str, error: str) -> StepResult:
        """The agent's turn could not be parsed into a message.

        It is handled like a failed tool call in tau2 (two steps, one error toward ``max_errors``):
        the agent gets an error observation, and the turn is kept in `rejected`, outside tau2's
        trajectory, which stays a valid tau2 message list.
        """
        if self.done:
            raise EpisodeDoneError("the episode has ended; check `done` before calling reject()")
        t = self.tau2
        self.counters.agent_turns += 1
        self.rejected.append({"after_message": len(self.messages), "text": text, "error": error})
        self.counters.steps += 1  # agent -> environment
        self.counters.errors += 1
        self._to = Role.AGENT
        self._after_step()  # environment -> agent
        observation = t.ToolMessage(
            id=f"rejected_{len(self.rejected)}",
            role="tool",
            content=f"Error: {error}",
            requestor="assistant",
            error=True,
        )
        return StepResult([observation], self.done, self.termination_reason)

    def fail(
        self, reason: str, termination_reason: str = "agent_error", status: str = "failed"
    ) -> None:
        """End the episode from outside (policy failure, budget, cancellation) with a reason."""
        if not self.done:
            self._finish(termination_reason, reason, status)

    def score(self) -> Any:
        """tau2's `RewardInfo` for the finished episode (think calls left out: `strip_think`)."""
        if not self.done:
            raise EpisodeDoneError("score() needs a finished episode")
        reason = self.termination_reason
        tau2_reason = TAU2_TERMINATION_REASON.get(str(reason), reason)
        messages = strip_think(self.messages) if self.think else self.messages
        limits: dict[str, int] = {}
        if self.rules.step_limit == "agent_actions":  # the backend re-derives max_steps itself
            limits["max_actions"] = self.config.tau1_max_num_steps
        info = self.domain.score(
            self.task,
            messages,
            tau2_reason,
            judge=self.judge,
            grading=self.config.grading,
            solo_mode=self.solo,
            **limits,
        )
        if tau2_reason != reason:  # ours stays in termination_reason; tau2's is recorded here
            info.info = {**(info.info or {}), "tau2_termination_reason": tau2_reason}
        return info

    @property
    def environment(self) -> Any:
        return self._env

    # -- internals -----------------------------------------------------------------------------
    def _finish(self, reason: str, error: str | None = None, status: str | None = None) -> None:
        self.done = True
        self.termination_reason = reason
        self.status = status or ("truncated" if reason == "max_steps" else "completed")
        if error is not None:
            self.error = error

    def _append(self, message: Any) -> None:
        if getattr(message, "timestamp", None) is None:
            message.timestamp = datetime.now().isoformat()
        message.turn_idx = len(self.messages)
        self.messages.append(message)

    def _new_call_id(self, prefix: str) -> str:
        self._call_ids += 1
        return f"{prefix}_{self._call_ids}"

    def _normalise_agent_message(self, message: Any) -> Any:
        t = self.tau2
        if not isinstance(message, t.AssistantMessage):
            self.fail(f"policy returned {type(message).__name__}, not an AssistantMessage")
            return None
        if not (message.has_text_content() or message.is_tool_call()):
            self._append(message)
            self.fail("agent sent an empty message (no text and no tool calls)", status="completed")
            return None
        for call in message.tool_calls or []:
            call.requestor = "assistant"
            if not call.id:
                call.id = self._new_call_id("call")
        return message

    def _solo_stop_call(self, message: Any) -> Any:
        """tau2's `LLMSoloAgent`: a message with a call to `done` becomes the stop text, and every
        call in it (`done` and the others) is dropped unexecuted. The calls are kept in
        ``raw_data["solo_stop_calls"]`` (and its text in ``solo_stop_content``) for the record; the token transcript keeps what was
        sampled."""
        calls = message.tool_calls or []
        if not any(call.name == solo().stop_function for call in calls):
            return message
        raw = dict(message.raw_data or {})
        raw["solo_stop_calls"] = [call.model_dump(mode="json") for call in calls]
        raw["solo_stop_content"] = message.content
        message.content = solo().stop_token
        message.tool_calls = None
        message.raw_data = raw
        return message

    def _after_step(self) -> None:
        """tau2's rule, applied after every step that does not hand over to the environment.

        Under tau2's rules ``max_steps`` reached on the step that ended the episode overrides
        its ending, as tau2's orchestrator does; under v1's an episode that has ended keeps its
        ending (a transfer on the last allowed step is a transfer). Under v1's rules the limit counts agent actions and is
        checked when the turn comes back to the agent, as v1's ``for _ in range(max_num_steps)``
        loop does; v1 has no error limit.
        """
        self.counters.steps += 1
        if (self.done and self.rules.first_ending_wins) or self._to is Role.ENV:
            return
        self._check_limits()

    def _check_limits(self) -> None:
        rules = self.rules
        if rules.step_limit == "agent_actions":
            if self._to is Role.AGENT and self.counters.agent_turns >= (
                self.config.tau1_max_num_steps
            ):
                self._finish("max_steps")
        elif self.counters.steps >= self.config.max_steps:
            self._finish("max_steps")
        if rules.max_errors_applies and self.counters.errors >= self.config.max_errors:
            self._finish("too_many_errors")

    def _agent_stops(self, message: Any) -> bool:
        return (
            self.rules.agent_stop_ends_episode
            and message.content is not None
            and AGENT_STOP_TOKEN in message.content
        )

    def _resume_from(self, last: Any) -> None:
        """Whose turn it is after a task's message history (as tau2's orchestrator decides)."""
        t = self.tau2
        self._pending = last
        if isinstance(last, t.AssistantMessage):
            self._from = Role.AGENT
            self._to = Role.ENV if last.is_tool_call() else Role.USER
            if self._agent_stops(last):
                self._finish("agent_stop")
        elif isinstance(last, t.UserMessage):
            self._from = Role.USER
            self._to = Role.ENV if last.is_tool_call() else Role.AGENT
            if _is_user_stop(t, last, self.rules):
                self._finish("user_stop")
        elif isinstance(last, t.ToolMessage):
            self._from = Role.ENV
            self._to = Role.AGENT if last.requestor == "assistant" else Role.USER
        else:
            self._finish("agent_error", f"unexpected last history message {type(last).__name__}")

    async def _advance(self) -> None:
        while not self.done and self._to is not Role.AGENT:
            self._checkpoint = self._state_now()
            if self._to is Role.USER:
                await self._user_turn()
            else:
                # The tools run on a worker thread; their results are recorded here, on the
                # loop, only once they are all in: a host that cancels the episode meanwhile
                # gets a trajectory that no orphaned thread writes into afterwards.
                results = await run_cpu(self._run_tools, self._env, self._pending)
                self._env_turn(results)
            if self._think_only:  # answered here, not by the environment: no step, same limits
                self._think_only = False
                self._check_limits()
                continue
            self._after_step()
            self._sync_env()
        self._checkpoint = None

    async def _user_turn(self) -> None:
        t = self.tau2
        try:
            reply = await self.user.respond(self._pending)
        except Exception as exc:
            self._finish("user_error", f"user simulator failed: {exc!r}", "failed")
            return
        if not isinstance(reply, t.UserMessage) or not (
            reply.has_text_content() or reply.is_tool_call()
        ):
            self._finish(
                "user_error", f"user simulator returned an invalid message: {reply!r}", "failed"
            )
            return
        for call in reply.tool_calls or []:
            call.requestor = "user"
            if not call.id:
                call.id = self._new_call_id("user_call")
        self.counters.user_turns += 1
        if _is_user_stop(t, reply, self.rules):
            self._finish("user_stop")
        self._append(reply)
        self._pending, self._from = reply, Role.USER
        self._to = Role.ENV if reply.is_tool_call() else Role.AGENT

    def _is_think(self, call: Any) -> bool:
        return bool(self.think) and call.name == THINK_TOOL_NAME and call.requestor == "assistant"

    def _answer_call(self, env: Any, call: Any) -> Any:
        if self._is_think(call):  # AReaL's think tool: answered here; the environment never sees it
            return self.tau2.ToolMessage(
                id=call.id, role="tool", content=THINK_ANSWER, requestor="assistant"
            )
        return self._call_tool(env, call)

    def _run_tools(self, env: Any, pending: Any) -> list[Any]:
        return [self._answer_call(env, call) for call in pending.tool_calls or []]

    def _env_turn(self, results: list[Any]) -> None:
        t = self.tau2
        calls = self._pending.tool_calls or []
        thinks = 0
        for call, result in zip(calls, results, strict=True):
            if self._is_think(call):
                thinks += 1
                self.counters.think_calls += 1
                continue
            self.counters.tool_calls += 1
            if result.error:
                self.counters.errors += 1
                self.counters.tool_errors += 1
        for result in results:
            self._append(result)
        self._think_only = bool(calls) and thinks == len(calls)
        terminate = self.domain.terminate_tools
        if terminate and any(
            call.name in terminate and call.requestor == "assistant"
            for call in self._pending.tool_calls or []
        ):
            self._finish("terminate_tool")  # tau-bench v1: a terminating tool ends the episode
        if len(results) == 1:
            self._pending = results[0]
        else:
            self._pending = t.MultiToolMessage(role="tool", tool_messages=results)
        self._to, self._from = self._from, Role.ENV

    def _call_tool(self, env: Any, call: Any) -> Any:
        try:
            return env.get_response(call)
        except Exception as exc:  # get_response already turns tool errors into messages
            return self.tau2.ToolMessage(
                id=call.id,
                role="tool",
                content=f"Error: {exc}",
                requestor=call.requestor,
                error=True,
            )

    # -- suspension (issue 23) -----------------------------------------------------------------
    def _state_now(self) -> tuple[Any, ...]:
        """Cheap: message count, counters, ids, whose turn; indices are found in `state()`."""
        return (
            len(self.messages),
            dataclasses.replace(self.counters),
            self._call_ids,
            len(self.rejected),
            self._to,
            self._from,
            self._pending,
        )

    def state(self) -> dict[str, Any]:
        """This unfinished episode as JSON (tau2 messages, counters, whose turn it is).

        Inside a user or environment call (the host cancelled the episode there) it is the state
        from before that call, which `restore` makes again; what the abandoned call did to the
        old environment is thrown away with it.
        """
        if self.done:
            raise EpisodeDoneError("only an unfinished episode can be suspended")
        n, counters, call_ids, n_rejected, to, from_, pending = (
            self._checkpoint if self._checkpoint is not None else self._state_now()
        )
        messages = self.messages[:n]
        parts = [] if pending is None else (getattr(pending, "tool_messages", None) or [pending])
        return {
            "messages": [m.model_dump(mode="json") for m in messages],
            "history_len": self._history_len,
            "counters": dataclasses.asdict(counters),
            "call_ids": call_ids,
            "rejected": copy.deepcopy(self.rejected[:n_rejected]),
            "next": None if to is None else to.value,
            "from": None if from_ is None else from_.value,
            "pending": [_index_of(messages, m) for m in parts],
            "uncounted_turn": self._uncounted_turn,
        }

    async def restore(self, state: dict[str, Any]) -> None:
        """Rebuild a suspended episode on a fresh environment (no user or model call).

        The recorded tool calls after the task's history are run again, in order, on a fresh
        copy-on-write view of the task's initial state; each result must equal the recorded one
        (content as JSON, else as text, and the error flag), or the episode ends ``failed`` with
        the call named: a divergent replay would train on an episode that never happened.
        """
        t = self.tau2
        try:
            self._env = await run_cpu(self.domain.initial_environment, self.task)
        except Exception as exc:
            self._finish("agent_error", f"resume: environment set-up failed: {exc!r}", "failed")
            return
        self.messages = [message_from_json(t, m) for m in state["messages"]]
        self._history_len = int(state["history_len"])
        # Suspended before the environment answered a message's calls: they run on resume.
        unrun = state["pending"][0] if state["next"] == Role.ENV.value else None
        mismatch = await run_cpu(self._replay, unrun)
        if mismatch is not None:
            self._finish("agent_error", f"resume: {mismatch}", "failed")
            return
        self.counters = _Counters(**state["counters"])
        self._call_ids = int(state["call_ids"])
        self._uncounted_turn = bool(state.get("uncounted_turn", False))
        self.rejected = list(state["rejected"])
        self._to = Role(state["next"]) if state["next"] else None
        self._from = Role(state["from"]) if state["from"] else None
        pending = [self.messages[i] for i in state["pending"]]
        if len(pending) == 1:
            self._pending = pending[0]
        elif pending:
            self._pending = t.MultiToolMessage(role="tool", tool_messages=pending)
        else:
            self._pending = None

    def _replay(self, unrun: int | None = None) -> str | None:
        """Run every recorded tool call after the task's history again (but those of message
        `unrun`, whose results were never recorded); the first difference."""
        messages = self.messages
        i = self._history_len
        while i < len(messages):
            message = messages[i]
            calls = message.tool_calls if message.role in ("assistant", "user") else None
            if i == unrun:
                calls = None
            i += 1
            if calls:
                for call in calls:
                    got = self._answer_call(self._env, call)
                    recorded = messages[i] if i < len(messages) else None
                    if recorded is None or recorded.role != "tool" or recorded.id != call.id:
                        return (
                            f"the recorded messages lack the result of {call.name} "
                            f"(call {call.id!r}, message {i})"
                        )
                    if not _same_result(got, recorded):
                        return (
                            f"replayed {call.name} (message {i}) returned a different result: "
                            f"expected {recorded.content!r} (error={recorded.error}), got "
                            f"{got.content!r} (error={got.error})"
                        )
                    i += 1
            try:
                self._env.sync_tools()
            except Exception as exc:
                return f"environment state sync failed during replay: {exc!r}"
        return None

    def _sync_env(self) -> None:
        try:
            self._env.sync_tools()
        except Exception as exc:
            self._finish("agent_error", f"environment state sync failed: {exc!r}", "failed")


def _index_of(messages: list[Any], message: Any) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index] is message:
            return index
    raise ValueError("pending message is not in the trajectory")


def message_from_json(t: Any, data: dict[str, Any]) -> Any:
    """A tau2 message from its JSON (timestamps and turn indices kept as recorded)."""
    cls = {"assistant": t.AssistantMessage, "user": t.UserMessage, "tool": t.ToolMessage}.get(
        str(data.get("role"))
    )
    if cls is None:
        raise ValueError(f"cannot restore a message with role {data.get('role')!r}")
    return cls.model_validate(data)


def _same_result(got: Any, recorded: Any) -> bool:
    if bool(got.error) != bool(recorded.error):
        return False
    a, b = got.content or "", recorded.content or ""
    try:
        return bool(json.loads(a) == json.loads(b))
    except (TypeError, ValueError):
        return a == b


def _is_user_stop(t: Any, message: Any, rules: EpisodeRules = TAU2_RULES) -> bool:
    """tau2's `UserSimulator.is_stop`: a reply that carries tool calls is never a stop (the calls
    run and the conversation goes on), whatever its text says. The stop texts are the backend's
    (v1 knows only ``###STOP###``)."""
    if message.is_tool_call():
        return False
    content = message.content
    if not content:
        return False
    tokens = rules.user_stop_tokens
    if tokens is None:
        tokens = (t.STOP, t.TRANSFER, t.OUT_OF_SCOPE)
    return any(token in content for token in tokens)


def _agent_visible(message: Any) -> bool:
    """Messages the agent sees: its own, the user's text, and results of its own tool calls."""
    role = getattr(message, "role", None)
    if role == "assistant":
        return True
    if role == "user":
        return not message.is_tool_call()
    if role == "tool":
        return getattr(message, "requestor", "assistant") == "assistant"
    return False


def _user_history(t: Any, history: list[Any]) -> list[Any]:
    """What the user simulator is started with when a task has a message history.

    As tau2's orchestrator does it: when the last message is addressed to the user (an agent's text,
    or the result of the user's own tool call), the user starts without it and receives it once as
    its first message; otherwise the user starts with the whole history.
    """
    if not history:
        return []
    last = history[-1]
    addressed_to_user = isinstance(last, t.AssistantMessage) or (
        isinstance(last, t.ToolMessage) and last.requestor == "user"
    )
    shown = history[:-1] if addressed_to_user else history
    return [m for m in shown if _user_visible(m)]


def _user_visible(message: Any) -> bool:
    role = getattr(message, "role", None)
    if role == "assistant":
        return not message.is_tool_call()
    if role == "user":
        return True
    if role == "tool":
        return getattr(message, "requestor", "assistant") == "user"
    return False


# Public name for readers of saved trajectories (warm-up export) that rebuild the agent's view.
agent_visible = _agent_visible


def with_think_tool(tools: list[dict[str, Any]], domain: str, at: int) -> list[dict[str, Any]]:
    """`tools` with AReaL's think tool inserted at `at`: after the agent's own tools, before the
    user's tools and `done` in solo mode, as AReaL's example orders them."""
    names = [tool.get("function", {}).get("name") for tool in tools]
    if THINK_TOOL_NAME in names:
        raise ConfigError(
            f"add_thinking_tool: domain {domain!r} already has a tool named "
            f"{THINK_TOOL_NAME!r} (tau-bench v1's own think tool); set add_thinking_tool false"
        )
    return [*tools[:at], THINK_TOOL_SCHEMA, *tools[at:]]


class SoloUser:
    """tau2's `DummyUser`: the user of a solo episode, never addressed (the session does not call
    it); it exists so that hosts which build a user for every episode need no special case."""

    async def start(self, context: EpisodeContext, history: list[Any]) -> None:
        return None

    async def respond(self, message: Any) -> Any:
        raise RuntimeError("the user of a solo episode is never addressed (tau2's DummyUser)")

    def suspend_state(self) -> dict[str, Any]:
        return {"kind": "solo"}  # nothing to keep: a solo episode can be suspended all the same

    def restore(self, context: EpisodeContext, state: dict[str, Any]) -> None:
        if state.get("kind") != "solo":
            raise ValueError(f"cannot restore a solo user from {state.get('kind')!r} state")

    async def close(self) -> None:
        return None
