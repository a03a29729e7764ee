"""The contracts every layer shares: episode statuses, the agent/user protocols and what they see.

Nothing here imports tau2 or any implementation; a policy, a user simulator or a host adapter
written against these names works with every benchmark backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tau_adapters.config import EpisodeConfig

#: What an agent says to end the episode (tau2's and tau-bench's stop text).
AGENT_STOP_TOKEN = "###STOP###"


class Status(str, Enum):
    """How an episode ended, as trainers need to know it.

    ``completed``: scored by the benchmark; ``truncated``: cut by a limit (steps, tokens, turns,
    deadline), scored as the benchmark scores it; ``aborted``: the host cancelled it (never a
    training sample); ``failed``: infrastructure (engine, user simulator, environment, scoring),
    never counted as the model's zero. A member compares equal to its string value.
    """

    COMPLETED = "completed"
    TRUNCATED = "truncated"
    ABORTED = "aborted"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)


class Role(str, Enum):
    AGENT = "agent"
    USER = "user"
    ENV = "env"


@dataclass
class EpisodeContext:
    """What the agent and the user are told about the episode."""

    domain: str
    task: Any
    system_prompt: str
    policy: str
    tools: list[dict[str, Any]]
    user_tools: list[dict[str, Any]]
    seed: int
    config: EpisodeConfig


@dataclass
class StepResult:
    """What the agent gets back for one of its messages."""

    observation: list[Any]
    done: bool
    termination_reason: str | None = None


@runtime_checkable
class Policy(Protocol):
    """Who plays the agent; one object per episode."""

    async def start(self, context: EpisodeContext) -> None: ...

    async def act(self, observation: list[Any]) -> Any: ...

    async def close(self) -> None: ...


@runtime_checkable
class User(Protocol):
    """Who plays the customer; one object per episode."""

    async def start(self, context: EpisodeContext, history: list[Any]) -> None: ...

    async def respond(self, message: Any) -> Any: ...

    async def close(self) -> None: ...
