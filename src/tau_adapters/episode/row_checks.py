"""Checks that a saved trajectory row is what its labels say, before it is scored again.

A row names its task by (domain, split, task_id). Task ids repeat across domains (airline and
retail both have task "5"), so a relabelled row would silently be scored as another task. Two
identities catch that: the task's content fingerprint, written by `rollout` into every row, and,
for rows written before fingerprints existed, the tools: a tool call that *succeeded* names a tool
of the domain it ran in, so a successful call to a tool the labelled domain does not have proves
the label wrong. Duplicate episodes are refused because they would count as extra trials.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tau_adapters.errors import ConfigError, UnknownNameError


def task_fingerprint(task: Any) -> str:
    """A short content hash of a tau2 task (its JSON, keys sorted)."""
    dump = task.model_dump(mode="json") if hasattr(task, "model_dump") else task
    text = json.dumps(dump, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _tool_names(schemas: Sequence[Mapping[str, Any]]) -> set[str]:
    return {str(s.get("function", s).get("name")) for s in schemas}


def _successful_tools(messages: Sequence[Any]) -> set[str]:
    """Names of tools whose call got a non-error result, from tau2 message JSON."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        for call in message.get("tool_calls") or []:
            if isinstance(call, Mapping) and call.get("id"):
                names[str(call["id"])] = str(call.get("name"))
        results = message.get("tool_messages") if message.get("role") == "tool" else None
        for result in results or [message]:
            if (
                isinstance(result, Mapping)
                and result.get("role") == "tool"
                and not result.get("error")
                and str(result.get("id")) in names
            ):
                used.add(names[str(result["id"])])
    return used


def check_row_identity(row: Mapping[str, Any], backend: Any, task: Any) -> None:
    """Raise `ConfigError` when the row's split is unknown or its content is another task's."""
    split = row.get("split")
    if split is not None and str(split) not in backend.splits():
        raise UnknownNameError(f"split of domain {backend.name!r}", split, backend.splits())
    label = f"{backend.name}/{task.id}"
    stored = row.get("task_fingerprint")
    if stored is not None and stored != task_fingerprint(task):
        raise ConfigError(
            f"the row's task content (fingerprint {stored}) is not task {label}'s "
            f"({task_fingerprint(task)}): was its domain or task_id relabelled?"
        )
    known = _tool_names(backend.tool_schemas) | _tool_names(backend.user_tool_schemas)
    foreign = sorted(_successful_tools(row.get("messages") or []) - known)
    if foreign:
        raise ConfigError(
            f"the row's tool calls {', '.join(foreign)} succeeded, but domain {backend.name!r} has "
            f"no such tools: the row comes from another domain (was it relabelled as {label}?)"
        )


def check_no_duplicates(rows: Sequence[Mapping[str, Any]], source: str) -> None:
    """Each (domain, task_id, trial) once: a duplicate would count one episode as two trials."""
    first: dict[tuple[str, str, str], int] = {}
    for number, row in enumerate(rows, 1):
        key = (str(row.get("domain")), str(row.get("task_id")), str(row.get("trial", 0)))
        if key in first:
            raise ConfigError(
                f"{source}: rows {first[key]} and {number} are the same episode (domain "
                f"{key[0]!r}, task {key[1]!r}, trial {key[2]}); remove the duplicate, or it "
                "would count as an extra trial"
            )
        first[key] = number


def check_task_for_domain(task: Any, backend: Any) -> None:
    """Refuse a task that is not a task object, or whose gold actions call tools `backend` lacks.

    Task ids repeat across domains, so a retail task run under an airline configuration would
    be labelled airline and scored against the airline database without a word; its gold
    actions name retail tools, which gives it away. A task without gold actions passes.
    """
    if isinstance(task, str | int) or not hasattr(task, "id"):
        raise ConfigError(
            f"rollout takes a task object, got {type(task).__name__} {task!r}; look it up "
            f"first: get_domain({backend.name!r}).task({str(task)!r})"
        )
    criteria = getattr(task, "evaluation_criteria", None)
    actions = getattr(criteria, "actions", None) or []
    named = {str(getattr(action, "name", "")) for action in actions} - {""}
    known = _tool_names(backend.tool_schemas) | _tool_names(backend.user_tool_schemas)
    foreign = sorted(named - known)
    if foreign:
        raise ConfigError(
            f"task {task.id!r} calls {', '.join(foreign)}, which domain {backend.name!r} does not "
            "have: it is another domain's task; build the config with that task's domain"
        )
