"""The tau-bench v1 backend: tasks, fast isolated environments and v1's own reward.

One `Tau1Domain` per v1 domain and process (`get_tau1_domain`), named ``tau1-airline`` and
``tau1-retail``. Episodes speak the library's message format (tau2's message types, so the session,
policies, token level and adapters work unchanged); this module translates at the edges:

- tasks: each v1 `Task` becomes a tau2 `Task` with id ``"<split>-<index>"`` (v1 identifies tasks by
  their index in a split), the instruction as the user scenario, the gold actions as assistant
  actions and v1's required ``outputs`` as ``communicate_info`` (what the oracle says);
- tools: v1's own tool classes run on a copy-on-write view of v1's data (`tau1_data`);
- reward: v1's own ``Env.calculate_reward`` on an instance of v1's own environment class whose
  ``data_load_func`` hands out a fresh view and whose ``get_data_hash`` returns v1's own hash
  string, computed from cached per-entry texts (`BaseData.v1_hash`); the episode's assistant
  messages are replayed as v1 ``Action``s through v1's own ``Env.step``.

Episodes end as v1's runner (``ToolCallingAgent.solve``) ends them (`TAU1_RULES`): only by the
user's ``###STOP###`` or a terminating tool (``transfer_to_human_agents``), both scored, or after
``max_num_steps`` agent actions (30), which scores 0. The agent's own ``###STOP###`` text is an
ordinary reply the user hears (v1 has no agent stop); a message acts through its first tool call
only; failed tool calls never end the episode. `score` re-derives the ending from the messages the
same way, so a stored label never decides a reward.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

from tau_adapters.domains.base import EpisodeRules
from tau_adapters.domains.tau1.api import TAU1_DOMAINS, TAU1_SPLITS, api1, tau1_version_label
from tau_adapters.domains.tau1.data import READ_ONLY_TOOLS, BaseData
from tau_adapters.domains.tau2.api import api
from tau_adapters.errors import UnknownNameError
from tau_adapters.runtime.gc_hygiene import freeze_long_lived

DEFAULT_SPLIT = "test"
#: v1's only stop text (``Env.step``: ``done = "###STOP###" in observation``).
V1_STOP = "###STOP###"
#: v1's runner: ``ToolCallingAgent.solve(max_num_steps=30)``.
V1_MAX_NUM_STEPS = 30
#: Endings after which v1 computes a reward (``done`` in v1's ``Env.step``).
SCORED_ENDINGS = frozenset({"user_stop", "terminate_tool"})
#: How v1's runner ends an episode (tau_bench/agents/tool_calling_agent.py, envs/base.py).
TAU1_RULES = EpisodeRules(
    agent_stop_ends_episode=False,
    user_stop_tokens=(V1_STOP,),
    first_tool_call_only=True,
    max_errors_applies=False,
    step_limit="agent_actions",
    first_ending_wins=True,
    extra_termination_reasons=frozenset({"terminate_tool"}),
)

_lock = threading.Lock()
_domains: dict[str, Tau1Domain] = {}


def get_tau1_domain(name: str) -> Tau1Domain:
    """The process-wide backend of a v1 domain (built on first use, then shared)."""
    if name not in TAU1_DOMAINS:
        raise UnknownNameError("tau-bench v1 domain", name, list(TAU1_DOMAINS))
    with _lock:
        backend = _domains.get(name)
        if backend is None:
            backend = Tau1Domain(name)
            _domains[name] = backend
        return backend


def _sharing_tool(tool: Any, base: BaseData) -> type:
    """v1's tool class, run in share mode (no copies of base entries it only reads)."""

    def invoke(*args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("data", args[0] if args else None)
        state = BaseData.state_of(data) if isinstance(data, dict) else None
        if state is None or state.share:
            return tool.invoke(*args, **kwargs)
        state.share = True
        try:
            return tool.invoke(*args, **kwargs)
        finally:
            state.share = False

    return type(f"Sharing{tool.__name__}", (tool,), {"invoke": staticmethod(invoke)})


def _silent_user(base: type) -> Any:
    """A v1 user for scoring: v1's ``step`` only asks it if a gold action were a ``respond``
    (none is at the pinned commit); v1's ``human`` user would then block on ``input()``."""

    class SilentUser(base):  # type: ignore[misc,valid-type]
        def reset(self, instruction: str | None = None) -> str:
            return ""

        def step(self, content: str) -> str:
            return ""

        def get_total_cost(self) -> float:
            return 0.0

    return SilentUser()


class Tau1Environment:
    """A live v1 episode environment with the interface the session drives.

    ``get_response(ToolCall) -> ToolMessage`` runs v1's tool on this episode's view, handling
    failures the way v1's ``Env.step`` does (``"Error: ..."`` text, ``"Unknown action ..."``).
    """

    def __init__(self, domain: Tau1Domain) -> None:
        self.domain = domain
        self.data = domain.base.view()
        self.user_tools = None

    def get_response(self, call: Any) -> Any:
        t = self.domain.tau2
        tool: Any = self.domain.tools_map.get(call.name)
        if tool is None:
            content, error = f"Unknown action {call.name}", True
        else:
            try:
                content = tool.invoke(data=self.data, **dict(call.arguments or {}))
                error = isinstance(content, str) and content.startswith("Error")
            except Exception as exc:
                content, error = f"Error: {exc}", True
        return t.ToolMessage(
            id=call.id,
            role="tool",
            content=str(content),
            requestor=call.requestor or "assistant",
            error=error,
        )

    def sync_tools(self) -> None:
        """v1 has no user-side state to keep in step with the agent's."""
        return None

    def get_data_hash(self) -> str:
        return self.domain.base.digest(self.data)


class Tau1Domain:
    """Tasks, environments and scoring of one tau-bench v1 domain, with per-process caches."""

    benchmark = "tau1"
    #: v1's agent sees the user's first words, not the greeting the user answers.
    agent_sees_greeting = False
    episode_rules = TAU1_RULES

    def __init__(self, name: str) -> None:
        v1 = api1()
        self.name = name
        self.v1_name = TAU1_DOMAINS[name]
        self.v1 = v1
        self.tau2 = api()
        env_cls = v1.env_class(self.v1_name)
        # v1's own constructor, once: it loads the data and gives wiki, tools, terminate tools.
        template = env_cls(user_strategy="human", task_split=DEFAULT_SPLIT, task_index=0)
        self.wiki: str = template.wiki
        self.policy: str = template.wiki
        self.rules: list[str] = list(template.rules)
        self.terminate_tools: frozenset[str] = frozenset(template.terminate_tools)
        self.tool_schemas: list[dict[str, Any]] = list(template.tools_info)
        self.user_tool_schemas: list[dict[str, Any]] = []
        #: e.g. ``tau-bench 0.1.0 (59a200c6d575)``: written into every trajectory row.
        self.version: str = tau1_version_label()
        self.base = BaseData(template.data, v1.to_hashable)
        read_only = READ_ONLY_TOOLS.get(self.v1_name, frozenset())
        self._v1_tools: list[type] = list(template.tools_map.values())
        self.tools_map: dict[str, type] = {
            tool_name: (_sharing_tool(tool, self.base) if tool_name in read_only else tool)
            for tool_name, tool in template.tools_map.items()
        }
        base = self.base

        def get_data_hash(env: Any) -> str:
            value = base.v1_hash(env.data)
            env.tau_adapters_hashes.append(value)
            return value

        # v1's environment class with faster inputs: data views instead of file loads, v1's hash
        # string from cached entry texts. Its step() and calculate_reward() are v1's own.
        self._fast_env_cls = type(
            f"CopyOnWrite{env_cls.__name__}",
            (env_cls,),
            {"get_data_hash": get_data_hash, "__module__": __name__},
        )
        self._silent_user = _silent_user(v1.user_module.BaseUserSimulationEnv)
        self._v1_tasks: dict[str, list[Any]] = {}
        self._tasks: dict[str, list[Any]] = {}
        self._tasks_by_id: dict[str, tuple[str, int, Any]] = {}
        freeze_long_lived()

    # -- tasks ---------------------------------------------------------------------------------
    def splits(self) -> list[str]:
        return list(TAU1_SPLITS[self.v1_name])

    def default_split(self) -> str:
        return DEFAULT_SPLIT

    def _load(self, split: str) -> list[Any]:
        if split not in TAU1_SPLITS[self.v1_name]:
            raise UnknownNameError(f"split of domain {self.name!r}", split, self.splits())
        with _lock:
            if split not in self._tasks:
                v1_tasks = self.v1.tasks(self.v1_name, split)
                converted = [
                    self._convert(split, index, task) for index, task in enumerate(v1_tasks)
                ]
                self._v1_tasks[split] = v1_tasks
                self._tasks[split] = converted
                for index, task in enumerate(converted):
                    self._tasks_by_id[task.id] = (split, index, v1_tasks[index])
        return self._tasks[split]

    def _convert(self, split: str, index: int, task: Any) -> Any:
        from tau2.data_model.tasks import Action, EvaluationCriteria, RewardType, UserScenario

        t = self.tau2
        respond = self.v1.RESPOND_ACTION_NAME
        actions = [
            Action(
                action_id=f"{split}-{index}-{i}",
                requestor="assistant",
                name=action.name,
                arguments=dict(action.kwargs),
            )
            for i, action in enumerate(task.actions)
            if action.name != respond
        ]
        return t.Task(
            id=f"{split}-{index}",
            user_scenario=UserScenario(instructions=task.instruction),
            evaluation_criteria=EvaluationCriteria(
                actions=actions,
                communicate_info=list(task.outputs),
                reward_basis=[RewardType.DB, RewardType.COMMUNICATE],
            ),
        )

    def tasks(self, split: str | None = None) -> list[Any]:
        """The tasks of a split in v1's order (ids ``<split>-<index>``)."""
        return list(self._load(split or DEFAULT_SPLIT))

    def task(self, task_id: str) -> Any:
        split, _, _ = task_id.partition("-")
        if split in TAU1_SPLITS[self.v1_name]:
            self._load(split)
        try:
            split, index, _ = self._tasks_by_id[task_id]
        except KeyError:
            known = [f"{s}-0..{s}-{len(self.v1.tasks(self.v1_name, s)) - 1}" for s in self.splits()]
            raise UnknownNameError(f"task id of domain {self.name!r}", task_id, known) from None
        return self._tasks[split][index]

    def v1_task(self, task_id: str) -> tuple[str, int, Any]:
        """(split, index, v1 Task) of a task id."""
        self.task(task_id)
        return self._tasks_by_id[task_id]

    # -- environments --------------------------------------------------------------------------
    def environment(self, solo_mode: bool = False) -> Tau1Environment:
        return Tau1Environment(self)

    def initial_environment(self, task: Any, solo_mode: bool = False) -> Tau1Environment:
        """v1 tasks have no initial state: every episode starts from the loaded data."""
        return Tau1Environment(self)

    def agent_system_prompt(self, task: Any = None) -> str:
        """v1's tool-calling agent gets the wiki as its whole system prompt."""
        return self.wiki

    def task_user_tool_schemas(self, task: Any) -> list[dict[str, Any]]:
        return self.user_tool_schemas

    def task_policy(self, task: Any = None) -> str:
        return self.policy

    def v1_env(self, task_id: str) -> Any:
        """An instance of v1's own environment class for a task, over copy-on-write data views."""
        split, index, _ = self.v1_task(task_id)
        env: Any = object.__new__(self._fast_env_cls)
        self.v1.Env.__init__(
            env,
            data_load_func=self.base.view,
            tools=self._v1_tools,
            tasks=self._v1_tasks[split],
            wiki=self.wiki,
            rules=self.rules,
            user_strategy="human",  # never asked: scoring replays actions, not the user
            user_model=None,
            task_index=index,
        )
        env.tools_map = dict(self.tools_map)
        env.terminate_tools = sorted(self.terminate_tools)
        env.user = self._silent_user
        env.tau_adapters_hashes = []  # every v1 hash calculate_reward asked for: [agent's, gold]
        return env

    # -- scoring -------------------------------------------------------------------------------
    def needs_judge(self, task: Any) -> bool:
        return False

    def check_scorable(
        self, task: Any, judge_model: str | None = None, grading: str = "official"
    ) -> None:
        return None

    def action_of(self, message: Any) -> Any:
        """v1's ``message_to_action``: a message with tool calls acts through its first call only
        (its text never reaches the user); a text-only message is a ``respond``. None for an empty
        message (the session ends the episode on one, so v1 never sees it)."""
        v1 = self.v1
        if message.tool_calls:
            call = message.tool_calls[0]
            return v1.Action(name=call.name, kwargs=dict(call.arguments or {}))
        if message.content:
            return v1.Action(name=v1.RESPOND_ACTION_NAME, kwargs={"content": message.content})
        return None

    def actions_of(self, messages: Sequence[Any]) -> list[Any]:
        """The agent's v1 actions in a message list (the opening greeting is not one: v1's agent
        starts from the user's first words)."""
        return [
            action
            for _, message in self._agent_messages(messages)
            if (action := self.action_of(message)) is not None
        ]

    def _agent_messages(self, messages: Sequence[Any]) -> list[tuple[int, Any]]:
        t = self.tau2
        out = []
        for index, message in enumerate(messages):
            if getattr(message, "role", None) != "assistant":
                continue
            if index == 0 and not message.tool_calls and message.content == t.FIRST_AGENT_MESSAGE:
                continue  # the session's greeting, which the user answers with the task
            out.append((index, message))
        return out

    def score(
        self,
        task: Any,
        messages: Sequence[Any],
        termination_reason: Any,
        *,
        judge: Any = None,
        grading: str = "official",
        solo_mode: bool = False,
        max_actions: int | None = None,
    ) -> Any:
        """v1's `RewardResult` for an episode, as v1's runner would give it.

        The messages are replayed the way v1's ``ToolCallingAgent.solve`` plays an episode: one
        action per assistant message (`action_of`), at most `max_actions` of them (v1's
        ``max_num_steps``, 30). A tool action goes through v1's own ``Env.step``; a reply is
        recorded as v1's ``respond`` and, if the user's next message contains ``###STOP###``, v1's
        ``done``. The first ``done`` (user stop or terminating tool) is scored by v1's own
        ``calculate_reward``; an episode that never got there (``max_steps``, or cut short:
        ``not_done``) gets reward 0 as in v1, with v1's verdict on its state kept for reading.
        ``termination_reason`` is only compared with the derived ending, never trusted.

        Beside v1's fields, ``tau_adapters`` says how the episode ended, v1's hash of the agent's
        data (which v1 computes but never reports), our digests and the action limit used.
        """
        reason = str(getattr(termination_reason, "value", termination_reason))
        limit = max_actions or V1_MAX_NUM_STEPS
        env = self.v1_env(task.id)
        respond = self.v1.RESPOND_ACTION_NAME
        result, ending, count = None, "not_done", 0
        for index, message in self._agent_messages(messages):
            action = self.action_of(message)
            if action is None:
                continue
            if count >= limit:
                ending = "max_steps"
                break
            count += 1
            if action.name == respond:
                # v1's step hands the text to the user; the user's reply follows it here.
                env.actions.append(action)
                reply = messages[index + 1] if index + 1 < len(messages) else None
                if (
                    reply is not None
                    and getattr(reply, "role", None) == "user"
                    and not reply.tool_calls
                    and V1_STOP in (reply.content or "")
                ):
                    result, ending = env.calculate_reward(), "user_stop"
                    break
                continue
            response = env.step(action)
            if response.done:  # a terminating tool: v1 scores here and the episode ends
                result, ending = response.info.reward_info, "terminate_tool"
                break
        else:
            if count >= limit:
                ending = "max_steps"
        if result is None:
            result = env.calculate_reward()  # v1's verdict on the state, for reading only
            result = result.model_copy(update={"reward": 0.0})
        hashes = env.tau_adapters_hashes
        extra = {
            "ending": ending,
            "scored": ending in SCORED_ENDINGS,
            "termination_reason": reason,
            "label_agrees": ending == reason
            or (ending not in SCORED_ENDINGS and reason not in SCORED_ENDINGS),
            "agent_actions": count,
            "max_num_steps": limit,
            "data_hash": hashes[0] if hashes else None,
            "gt_data_hash": hashes[1] if len(hashes) > 1 else None,
        }
        return _reward_result_class(self.v1)(**dict(result), tau_adapters=extra)


@functools.cache
def _reward_result_class(v1: Any) -> Any:
    """v1's ``RewardResult`` with one more field, ``tau_adapters``, for what v1 leaves out."""
    from pydantic import Field

    class Tau1RewardResult(v1.RewardResult):  # type: ignore[misc,name-defined]
        tau_adapters: dict[str, Any] = Field(default_factory=dict)

    return Tau1RewardResult
