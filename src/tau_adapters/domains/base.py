"""The interface every benchmark backend offers to the session, rollout, CLI and adapters.

Episodes speak one message format (tau2's message types), whatever the benchmark; a backend
translates its own tasks, tools and reward at its edges. Two implementations: `Tau2Domain` (module
`tau2`) and `Tau1Domain` (tau-bench v1, module `tau_bench`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


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
