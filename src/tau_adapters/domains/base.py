"""The interface every benchmark backend offers to the session, rollout, CLI and adapters.

Episodes speak one message format (tau2's message types), whatever the benchmark; a backend
translates its own tasks, tools and reward at its edges. Two implementations: `Tau2Domain` (module
`tau2`) and `Tau1Domain` (tau-bench v1, module `tau_bench`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class EpisodeRules:
    """How a benchmark's own runner ends an episode; the session follows its backend's rules.

    The defaults are tau2's orchestrator; tau-bench v1's runner differs in every field
    (`tau1.backend.TAU1_RULES`), so the differences are data here, not branches in the session.
    """

    #: Whether the agent's ``###STOP###`` text ends the episode (tau2) or is an ordinary reply the
    #: user hears (v1: its runner has no agent stop).
    agent_stop_ends_episode: bool = True
    #: Texts that make a user reply end the episode; ``None``: tau2's (stop, transfer, out of scope).
    user_stop_tokens: tuple[str, ...] | None = None
    #: v1 turns a message into one action: its first tool call; any further calls never run.
    first_tool_call_only: bool = False
    #: tau2's ``max_errors`` (failed tool calls end the episode); v1 has no such rule.
    max_errors_applies: bool = True
    #: What the step limit counts: ``messages`` of all roles against ``max_steps`` (tau2), or the
    #: agent's ``actions`` against ``tau1_max_num_steps`` (v1's ``max_num_steps``).
    step_limit: Literal["messages", "agent_actions"] = "messages"
    #: Whether an episode that has ended keeps its ending when the step limit is reached on the
    #: same step (v1: a transfer on the last allowed action is a transfer). tau2's orchestrator
    #: checks the limit after a stop and lets ``max_steps`` override it.
    first_ending_wins: bool = False
    #: Termination reasons of this benchmark that tau2's ``TerminationReason`` lacks.
    extra_termination_reasons: frozenset[str] = frozenset()


TAU2_RULES = EpisodeRules()


@runtime_checkable
class Domain(Protocol):
    name: str
    #: ``tau2`` or ``tau1``: written into every trajectory.
    benchmark: str
    #: The installed release (``tau2 26.3 (nvidia)``, ``tau2 1.0.1``): written into every row.
    version: str
    #: Handles on tau2's message types (`tau2_api.Tau2`).
    tau2: Any
    policy: str
    tool_schemas: list[dict[str, Any]]
    user_tool_schemas: list[dict[str, Any]]
    #: Tools whose call ends the episode (v1's ``transfer_to_human_agents``); empty for tau2.
    terminate_tools: frozenset[str]
    #: Whether the agent's first observation includes the scripted greeting the user answers.
    agent_sees_greeting: bool
    #: How episodes end (see `EpisodeRules`).
    episode_rules: EpisodeRules

    def agent_system_prompt(self, task: Any = None) -> str: ...

    def task_user_tool_schemas(self, task: Any) -> list[dict[str, Any]]: ...

    def task_policy(self, task: Any = None) -> str: ...

    def splits(self) -> list[str]: ...

    def default_split(self) -> str: ...

    def tasks(self, split: str | None = None) -> list[Any]: ...

    def task(self, task_id: str) -> Any: ...

    def initial_environment(self, task: Any, solo_mode: bool = False) -> Any: ...

    def needs_judge(self, task: Any) -> bool: ...

    def check_scorable(
        self, task: Any, judge_model: str | None = None, grading: str = "official"
    ) -> None: ...

    def score(
        self,
        task: Any,
        messages: Sequence[Any],
        termination_reason: Any,
        *,
        judge: Any = None,
        grading: str = "official",
        solo_mode: bool = False,
    ) -> Any: ...
