"""Domains whose environment depends on a retrieval variant and on the task (upstream v1's
``banking_knowledge``): one knowledge base and one retrieval index per process.

tau2's constructor (``get_environment(db, retrieval_variant, retrieval_kwargs, task, solo_mode,
read_log_allowlist)``) reloads the 698 documents and rebuilds the retrieval index on every call, and
its evaluator builds three environments per score. The index is read-only once built, so here it is
built once per (variant, kwargs) with tau2's own `build_tools`, and every later environment gets a
clone of that toolkit: the same class and pipelines, its own database and its own per-episode state.
The policy text is tau2's `build_policy` (per task only for variants that inline task documents).
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tau_adapters.errors import ConfigError

#: Our default: offline (tau2's own default, ``alltools``, needs an embeddings API and a sandbox).
DEFAULT_RETRIEVAL_VARIANT = "bm25"
#: Variants that run with no network, no API key and no sandbox binaries.
OFFLINE_VARIANTS = ("bm25", "bm25_grep", "grep_only", "no_knowledge", "full_kb", "golden_retrieval")
#: Variants whose policy inlines the task's own documents (built per task).
PER_TASK_POLICY = frozenset({"golden_retrieval"})

#: Seconds spent building each (variant, kwargs) toolkit template: knowledge base load + index.
BUILD_SECONDS: dict[str, float] = {}

_lock = threading.Lock()


def takes_retrieval_variant(constructor: Callable[..., Any]) -> bool:
    import inspect

    return "retrieval_variant" in inspect.signature(constructor).parameters


def read_log_allowlist(task: Any) -> set[str]:
    """The discoverable agent tools whose *read* calls are logged for the DB comparison: those the
    task's gold actions call through ``call_discoverable_agent_tool`` (tau2's runner derives the
    same set, ``runner/build.py``)."""
    allowlist: set[str] = set()
    criteria = getattr(task, "evaluation_criteria", None)
    for action in (criteria.actions or []) if criteria is not None else []:
        if action.name == "call_discoverable_agent_tool":
            name = (action.arguments or {}).get("agent_tool_name")
            if name:
                allowlist.add(name)
    return allowlist


@functools.cache
def _knowledge_module(module_name: str) -> Any:
    import importlib

    return importlib.import_module(module_name)


class KnowledgeEnvironments:
    """Builds a knowledge domain's environments with one shared index per variant."""

    def __init__(self, constructor: Callable[..., Any], variant: str) -> None:
        # The constructor's own module holds the building blocks (`get_knowledge_base`,
        # `resolve_variant`, `build_tools`, `build_policy`, `Environment`, the user toolkit).
        self.module = _knowledge_module(constructor.__module__)
        retrieval = _knowledge_module(self.module.resolve_variant.__module__)
        known = list(retrieval.get_all_variant_names())
        if variant not in known:
            raise ConfigError(
                f"retrieval_variant {variant!r} is not one of tau2's variants: {known}; offline "
                f"ones: {list(OFFLINE_VARIANTS)} (set EpisodeConfig.retrieval_variant)"
            )
        self.variant_name = variant
        self.retrieval_kwargs: dict[str, Any] = {}
        self._templates: dict[str, Any] = {}
        self._policies: dict[Any, str] = {}
        self._kb: Any = None

    def _knowledge_base(self) -> Any:
        if self._kb is None:
            self._kb = self.module.get_knowledge_base()
        return self._kb

    def _template(self, retrieval_kwargs: dict[str, Any] | None) -> tuple[Any, Any]:
        key = json.dumps(retrieval_kwargs or {}, sort_keys=True, default=str)
        with _lock:
            cached = self._templates.get(key)
            if cached is None:
                start = time.perf_counter()
                variant = self.module.resolve_variant(self.variant_name, **(retrieval_kwargs or {}))
                db = self.module.get_db()
                tools = self.module.build_tools(variant, db, self._knowledge_base())
                BUILD_SECONDS[f"{self.variant_name}{key if key != '{}' else ''}"] = (
                    time.perf_counter() - start
                )
                cached = (variant, tools)
                self._templates[key] = cached
            return cached

    def policy(self, task: Any = None, retrieval_kwargs: dict[str, Any] | None = None) -> str:
        variant, _ = self._template(retrieval_kwargs)
        per_task = self.variant_name in PER_TASK_POLICY
        key = (json.dumps(retrieval_kwargs or {}, sort_keys=True), task.id if per_task else None)
        policy = self._policies.get(key)
        if policy is None:
            policy = self.module.build_policy(variant, self._knowledge_base(), task)
            self._policies[key] = policy
        return policy

    def __call__(
        self,
        db: Any = None,
        retrieval_variant: str | None = None,
        retrieval_kwargs: dict[str, Any] | None = None,
        task: Any = None,
        solo_mode: bool = False,
        read_log_allowlist: set[str] | None = None,
    ) -> Any:
        """tau2's constructor signature; the index and policy come from the per-process caches."""
        if solo_mode:
            raise ValueError("banking_knowledge domain does not support solo mode")
        if retrieval_variant not in (None, self.variant_name):
            raise ValueError(
                f"this backend serves retrieval variant {self.variant_name!r}, "
                f"not {retrieval_variant!r}"
            )
        _, template = self._template(retrieval_kwargs)
        if db is None:
            db = self.module.get_db()
        tools = _clone_toolkit(template, db)
        tools.set_read_log_allowlist(read_log_allowlist)
        user_tools = self.module.KnowledgeUserTools(db)
        return self.module.Environment(
            domain_name=template_domain_name(self.module),
            policy=self.policy(task, retrieval_kwargs),
            tools=tools,
            user_tools=user_tools,
        )


def template_domain_name(module: Any) -> str:
    # `tau2.domains.<name>.environment` -> `<name>`
    return str(module.__name__).split(".")[-2]


def _clone_toolkit(template: Any, db: Any) -> Any:
    """A toolkit of the template's class over `db`: retrieval pipelines shared (read-only after
    indexing), per-episode containers (discoverable-tool state, the read-log allowlist) copied."""
    clone = object.__new__(type(template))
    for name, value in vars(template).items():
        if name == "db":
            continue
        if isinstance(value, (dict, list, set)):
            value = copy.deepcopy(value)
        setattr(clone, name, value)
    clone.db = db
    return clone
