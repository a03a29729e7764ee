"""The tau2 backend: tasks, fast isolated environments and the official score for one domain.

One `Tau2Domain` per domain and process (`get_domain`). It lets tau2 parse the domain's database
once, freezes it, and gives every episode a copy-on-write view (see `cow`). Scoring calls tau2's own
`evaluate_simulation(..., EvaluationType.ALL, ...)`; the only difference from a plain tau2 run is the
environment constructor tau2's evaluator receives (registered in tau2's registry under a private
name), which builds views instead of re-parsing the database, and compares databases by a digest of
the entries that can differ.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import inspect
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from tau_adapters.domains.base import TAU2_RULES
from tau_adapters.domains.cow import BaseDatabase
from tau_adapters.domains.names import resolve_domain
from tau_adapters.domains.tau2.api import api, toolkit_class_state
from tau_adapters.domains.tau2.knowledge import (
    DEFAULT_RETRIEVAL_VARIANT,
    KnowledgeEnvironments,
    read_log_allowlist,
    takes_retrieval_variant,
)
from tau_adapters.errors import ConfigError, UnknownNameError
from tau_adapters.runtime.gc_hygiene import freeze_long_lived

ALL_SPLIT = "all"

_lock = threading.Lock()
_domains: dict[str, Tau2Domain] = {}


def get_domain(name: str, retrieval_variant: str | None = None) -> Tau2Domain:
    """The process-wide backend of a domain (built on first use, then shared).

    `retrieval_variant` selects a knowledge domain's retrieval setup (``banking_knowledge``: one
    backend per variant; default `knowledge.DEFAULT_RETRIEVAL_VARIANT`); other domains ignore it.
    """
    domain, _ = resolve_domain(name)
    with _lock:
        constructor = _constructor(domain)
        variant = None
        if takes_retrieval_variant(constructor):
            variant = retrieval_variant or DEFAULT_RETRIEVAL_VARIANT
        key = domain if variant is None else f"{domain}@{variant}"
        backend = _domains.get(key)
        if backend is None:
            backend = Tau2Domain(domain, retrieval_variant=variant)
            _domains[key] = backend
        return backend


def _constructor(domain: str) -> Any:
    t = api()
    if domain not in t.registry.get_domains():
        raise UnknownNameError(
            f"domain of the installed {t.version_label}", domain, t.registry.get_domains()
        )
    return t.registry.get_env_constructor(domain)


def _fast_toolkit_class(toolkit_cls: Any, base: BaseDatabase, read_tools: frozenset[str]) -> type:
    """A subclass of a tau2 toolkit that shares base entries in READ tools and hashes by digest."""

    def use_tool(self: Any, tool_name: str, **kwargs: Any) -> Any:
        if tool_name in read_tools:
            with BaseDatabase.sharing(self.db):
                return toolkit_cls.use_tool(self, tool_name, **kwargs)
        return toolkit_cls.use_tool(self, tool_name, **kwargs)

    def get_db_hash(self: Any) -> str:
        # tau2 v1's `set_state` points `user_tools.db` at the agent's database after loading
        # `agent_data` (and the other way round after `user_data`); both are then databases
        # rebuilt by `update_db`, not views of this base: hash them as tau2 does.
        if isinstance(self.db, base.cls):
            return base.digest(self.db)
        return str(toolkit_cls.get_db_hash(self))

    # tau2 builds a pydantic model per tool on every `get_tools()` (~7 ms a tool); v1's
    # `evaluate_simulation` calls it on a fresh environment just to read tool types, which was
    # 86% of a score. The schemas depend on the class only: built once, shared (tools still run
    # through `use_tool` on each instance's own database).
    built: dict[str, dict[str, Any]] = {}

    def get_tools(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = repr((args, sorted(kwargs.items())))
        tools = built.get(key)
        if tools is None:
            tools = built[key] = toolkit_cls.get_tools(self, *args, **kwargs)
        return dict(tools)

    return type(
        f"CopyOnWrite{toolkit_cls.__name__}",
        (toolkit_cls,),
        {
            "use_tool": use_tool,
            "get_db_hash": get_db_hash,
            "get_tools": get_tools,
            "__module__": __name__,
        },
    )


class Tau2Domain:
    """Tasks, environments and scoring of one tau2 domain, with per-process caches."""

    benchmark = "tau2"
    terminate_tools: frozenset[str] = frozenset()
    agent_sees_greeting = True
    episode_rules = TAU2_RULES

    def __init__(self, name: str, retrieval_variant: str | None = None) -> None:
        t = api()
        self.name = name
        self.tau2 = t
        #: ``tau2 26.3 (nvidia)`` / ``tau2 1.0.1``: written into every trajectory row.
        self.version: str = t.version_label
        self._constructor = _constructor(name)
        self.retrieval_variant: str | None = None
        self._knowledge: KnowledgeEnvironments | None = None
        if takes_retrieval_variant(self._constructor):
            self.retrieval_variant = retrieval_variant or DEFAULT_RETRIEVAL_VARIANT
            self._knowledge = KnowledgeEnvironments(self._constructor, self.retrieval_variant)
            self._constructor = self._knowledge
        params = inspect.signature(self._constructor).parameters
        self._takes_user_db = "user_db" in params
        template = self._constructor()  # tau2 parses the database: once per process
        self.policy: str = template.get_policy()
        # `get_tools()` lists what the agent is offered; v1 hides "discoverable" tools there (the
        # agent unlocks them through a tool), while `toolkit.tools` still holds every tool.
        self.tool_schemas: list[dict[str, Any]] = [
            tool.openai_schema for tool in template.get_tools()
        ]
        self.user_tool_schemas: list[dict[str, Any]] = (
            [tool.openai_schema for tool in template.get_user_tools()]
            if template.user_tools is not None
            else []
        )
        self._base = BaseDatabase(template.tools.db)
        self._user_base = (
            BaseDatabase(template.user_tools.db) if template.user_tools is not None else None
        )
        #: Tools run in share mode (tau2 labels them READ): they see base entries uncopied.
        self.shared_read_tools = self._read_tools(template.tools)
        self._toolkit_cls = _fast_toolkit_class(
            type(template.tools), self._base, self.shared_read_tools
        )
        self._user_toolkit_cls = (
            _fast_toolkit_class(
                type(template.user_tools), self._user_base, self._read_tools(template.user_tools)
            )
            if template.user_tools is not None and self._user_base is not None
            else None
        )
        # tau2 keeps some episode state on toolkit classes (telecom's default VPN): each
        # environment gets its own copy (see `toolkit_class_state`).
        self._class_state = {
            kind: toolkit_class_state(type(kit))
            for kind, kit in (("tools", template.tools), ("user_tools", template.user_tools))
            if kit is not None
        }
        self.scoring_name = f"tau_adapters:{name}" + (
            f"@{self.retrieval_variant}" if self.retrieval_variant else ""
        )
        if self.scoring_name not in t.registry.get_domains():
            t.registry.register_domain(self.environment, self.scoring_name)
        self._all_tasks: list[Any] | None = None
        self._tasks_by_id: dict[str, Any] = {}
        self._splits: dict[str, list[str]] | None = None
        freeze_long_lived()  # the parsed database and templates never change

    def agent_system_prompt(self, task: Any = None) -> str:
        """tau2's agent prompt around this domain's policy (the task's own policy for a retrieval
        variant that inlines the task's documents, ``golden_retrieval``)."""
        from tau_adapters.domains.tau2.prompts import system_prompt

        return system_prompt(self.task_policy(task))

    def task_policy(self, task: Any = None) -> str:
        if task is not None and self._knowledge is not None:
            return self._knowledge.policy(task)
        return self.policy

    def task_user_tool_schemas(self, task: Any) -> list[dict[str, Any]]:
        """The user tools a task allows (v1's per-task ``Task.user_tools``; all when unset)."""
        allowed = self.tau2.task_user_tools(task)
        if allowed is None:
            return self.user_tool_schemas
        wanted = set(allowed)
        return [s for s in self.user_tool_schemas if s["function"]["name"] in wanted]

    def env_kwargs(self, task: Any) -> dict[str, Any]:
        """What tau2's runner passes as ``env_kwargs`` for this task (construction and scoring):
        for a knowledge domain the variant, the task and the read-log allowlist; else nothing."""
        if self._knowledge is None:
            return {}
        return {
            "retrieval_variant": self.retrieval_variant,
            "task": task,
            "read_log_allowlist": read_log_allowlist(task),
        }

    def _read_tools(self, toolkit: Any) -> frozenset[str]:
        read = self.tau2.ToolType.READ
        return frozenset(name for name in toolkit.tools if toolkit.tool_type(name) == read)

    # -- tasks ---------------------------------------------------------------------------------
    def _load_tasks(self) -> None:
        if self._all_tasks is not None:
            return
        loader = self.tau2.registry.get_tasks_loader(self.name)
        tasks = list(loader(None))  # every task, parsed once (telecom: a 14 MB file)
        splits_loader = self.tau2.registry.get_task_splits_loader(self.name)
        if splits_loader is None:  # tau2 registers no split loader for mock, but ships a split file
            module = importlib.import_module(_constructor(self.name).__module__)
            splits_loader = getattr(module, "get_tasks_split", None)
        try:
            splits = dict(splits_loader() or {}) if splits_loader is not None else {}
        except FileNotFoundError:
            splits = {}
        self._tasks_by_id = {task.id: task for task in tasks}
        self._splits = splits
        self._all_tasks = tasks
        freeze_long_lived()

    def splits(self) -> list[str]:
        """Valid split names (plus ``all``)."""
        self._load_tasks()
        assert self._splits is not None
        return [*self._splits, ALL_SPLIT]

    def default_split(self) -> str:
        return "base" if "base" in self.splits() else ALL_SPLIT

    def tasks(self, split: str | None = None) -> list[Any]:
        """The tasks of a split, in tau2's file order. ``None`` means the domain's default split."""
        self._load_tasks()
        assert self._all_tasks is not None and self._splits is not None
        split = split or self.default_split()
        if split == ALL_SPLIT:
            return list(self._all_tasks)
        if split not in self._splits:
            raise UnknownNameError(f"split of domain {self.name!r}", split, self.splits())
        wanted = set(self._splits[split])
        return [task for task in self._all_tasks if task.id in wanted]

    def task(self, task_id: str) -> Any:
        self._load_tasks()
        try:
            return self._tasks_by_id[task_id]
        except KeyError:
            raise UnknownNameError(
                f"task id of domain {self.name!r}", task_id, sorted(self._tasks_by_id)
            ) from None

    # -- environments --------------------------------------------------------------------------
    def environment(self, solo_mode: bool = False, **env_kwargs: Any) -> Any:
        """A fresh tau2 `Environment` over a private copy-on-write view of the database.

        `env_kwargs` are tau2's per-task constructor arguments (`env_kwargs(task)`); tau2's
        evaluator passes them back here when it scores."""
        kwargs: dict[str, Any] = {"db": self._base.view(), "solo_mode": solo_mode, **env_kwargs}
        if self._takes_user_db and self._user_base is not None:
            kwargs["user_db"] = self._user_base.view()
        env = self._constructor(**kwargs)
        env.tools.__class__ = self._toolkit_cls
        if env.user_tools is not None and self._user_toolkit_cls is not None:
            env.user_tools.__class__ = self._user_toolkit_cls
        for kind, state in self._class_state.items():
            toolkit = getattr(env, kind, None)
            for attribute, value in state.items():
                setattr(toolkit, attribute, copy.deepcopy(value))
        return env

    def initial_environment(self, task: Any, solo_mode: bool = False) -> Any:
        """An environment with the task's initial state applied exactly as tau2's orchestrator does."""
        env = self.environment(solo_mode=solo_mode, **self.env_kwargs(task))
        state = task.initial_state
        env.set_state(
            initialization_data=state.initialization_data if state is not None else None,
            initialization_actions=state.initialization_actions if state is not None else None,
            message_history=list(state.message_history or []) if state is not None else [],
        )
        return env

    # -- solo mode (tau2's llm_agent_solo with its dummy user) ---------------------------------
    @functools.cached_property
    def _solo(self) -> tuple[str, list[dict[str, Any]]] | str:
        """(solo policy, solo tools) or, for a domain tau2 refuses in solo mode, tau2's reason.

        tau2's own constructor decides (airline and retail raise): no list of domains here."""
        from tau_adapters.domains.tau2.solo import solo

        try:
            env = self.environment(solo_mode=True)
        except ValueError as exc:
            return str(exc)
        # tau2's order (run.py, LLMSoloAgent): agent tools, user tools, then `done`.
        tools = [*self.tool_schemas, *self.user_tool_schemas, solo().done_schema]
        return env.get_policy(), tools

    def check_solo(self, task: Any | None = None) -> None:
        """Refuse (configuration error) a domain or task that tau2 does not run in solo mode."""
        from tau_adapters.domains.tau2.solo import solo

        if isinstance(self._solo, str):
            raise ConfigError(
                f"solo_mode: tau2 does not support solo mode for domain {self.name!r} "
                f"({self._solo}); use telecom or mock, or set solo_mode false"
            )
        if task is not None:
            problem = solo().task_problem(task)
            if problem is not None:
                raise ConfigError(
                    f"solo_mode: task {task.id!r} of domain {self.name!r} cannot run in solo "
                    f"mode: {problem} (tau2's LLMSoloAgent.check_valid_task); leave it out"
                )

    def solo_agent(self, task: Any) -> tuple[str, str, list[dict[str, Any]]]:
        """What tau2's solo agent is given for `task`: system prompt, policy, tool schemas."""
        from tau_adapters.domains.tau2.solo import solo

        self.check_solo(task)
        assert not isinstance(self._solo, str)
        policy, tools = self._solo
        return solo().system_prompt(policy, task.ticket), policy, list(tools)

    # -- scoring -------------------------------------------------------------------------------
    def needs_judge(self, task: Any) -> bool:
        """Whether tau2 would call its LLM judge: NL_ASSERTION in the basis *and* assertions to
        grade (tau2 gives 1.0 without a call when the list is empty)."""
        criteria = task.evaluation_criteria
        if criteria is None:
            return False
        # v1 keeps NL_ASSERTION in the basis of 112 retail tasks, but only 40 carry assertions;
        # tau2's NL evaluator gives 1.0 without a model call when there are none.
        return self.tau2.RewardType.NL_ASSERTION in set(criteria.reward_basis) and bool(
            criteria.nl_assertions
        )

    def check_scorable(
        self, task: Any, judge_model: str | None = None, grading: str = "official"
    ) -> None:
        """Fail early (configuration error) for tasks that need an LLM judge nobody configured."""
        if grading == "official" and self.needs_judge(task) and not judge_model:
            raise ConfigError(
                f"task {task.id!r} of domain {self.name!r} has natural-language assertions, which "
                "the official score grades with an LLM judge: set --judge-model (openai:URL with "
                "--judge-model-name, or litellm:MODEL), or train with --reward official-no-judge "
                "(not the official score), or leave this task out"
            )

    def _without_nl(self, task: Any) -> Any:
        """The task with NL_ASSERTION taken out of its reward basis (grading official-no-judge)."""
        criteria = task.evaluation_criteria
        nl = self.tau2.RewardType.NL_ASSERTION
        if criteria is None or nl not in set(criteria.reward_basis):
            return task
        basis = [b for b in criteria.reward_basis if b != nl]
        return task.model_copy(
            update={"evaluation_criteria": criteria.model_copy(update={"reward_basis": basis})}
        )

    def score(
        self,
        task: Any,
        messages: Sequence[Any],
        termination_reason: Any,
        *,
        judge: Any = None,
        grading: str = "official",
        solo_mode: bool = False,
    ) -> Any:
        """tau2's `RewardInfo` for an episode, from tau2's own `evaluate_simulation`.

        `judge` (`tau_adapters.rewards.judge.Judge`) grades natural-language assertions while
        bound around the call; grading ``official-no-judge`` scores every other component of the
        basis instead (tau2's rule over a basis without NL_ASSERTION: not the official score).
        """
        t = self.tau2
        if grading == "official-no-judge":
            task = self._without_nl(task)
        else:
            self.check_scorable(task, judge.describe() if judge is not None else None)
        valid = {r.value for r in t.TerminationReason}
        if termination_reason not in valid:
            raise ValueError(
                f"termination reason {termination_reason!r} does not exist in the installed "
                f"{t.version_label} (valid: {sorted(valid)})"
            )
        reason = t.TerminationReason(termination_reason)
        simulation = t.SimulationRun.model_construct(
            id=str(uuid.uuid4()),
            task_id=task.id,
            start_time="",
            end_time="",
            duration=0.0,
            termination_reason=reason,
            messages=list(messages),
            reward_info=None,
        )
        judged = grading != "official-no-judge" and self.needs_judge(task)
        evaluation_type = (
            t.EvaluationType.ALL_WITH_NL_ASSERTIONS if judged else t.EvaluationType.ALL
        )
        extra: dict[str, Any] = {}
        if "env_kwargs" in t.evaluate_params:  # v1: the same per-task arguments as the episode
            extra["env_kwargs"] = self.env_kwargs(task)
        with judge.bound() if judged else contextlib.nullcontext():
            reward_info = t.evaluate_simulation(
                simulation=simulation,
                task=task,
                evaluation_type=evaluation_type,
                solo_mode=solo_mode,
                domain=self.scoring_name,
                **extra,
            )
        # tau2's checks hold the task's own gold objects (an ActionCheck's `action` is the task's
        # Action): hand back a copy, so that editing a result can never change the task.
        return copy.deepcopy(reward_info)
