"""Task references (domain, split, task id): listing, export, and loading them back."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tau_adapters.domains import get_domain, resolve_domain
from tau_adapters.errors import ConfigError
from tau_adapters.runtime.mappings import as_mapping


@dataclass(frozen=True)
class TaskRef:
    """Names one tau2 task; what hosts keep in their datasets instead of the task itself."""

    domain: str
    split: str
    task_id: str

    def load(self) -> Any:
        """The tau2 `Task` this reference names."""
        return get_domain(self.domain).task(self.task_id)

    def to_row(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def parse(
        cls,
        *sources: Any,
        default_domain: str | None = None,
        default_split: str | None = None,
        what: str = "a dataset row",
        hint: str = "write the dataset with `tau-adapters tasks export --format <host>`",
    ) -> TaskRef:
        """The task the first usable source names. A source is a mapping (or JSON text, or an
        OmegaConf node) with ``task_id`` and ``domain`` (else `default_domain`) and ``split``
        (else `default_split`), or a ``domain/split/task_id`` string. What every host's dataset
        row carries, parsed once here; a row naming no task raises `ConfigError` with `hint`."""
        seen = []
        for source in sources:
            if isinstance(source, str) and source.count("/") == 2:
                parts = source.strip().split("/")
                if all(parts):
                    return cls(parts[0], parts[1], parts[2])
            fields = as_mapping(source)
            if fields and fields.get("task_id") is not None:
                domain = fields.get("domain") or default_domain
                split = fields.get("split") or default_split
                if domain:
                    return cls(str(domain), str(split), str(fields["task_id"]))
            seen.append(repr(source)[:120])
        raise ConfigError(
            f"{what} does not name a task: expected {{domain, split, task_id}} or "
            f"'domain/split/task_id' ({hint}); got {', '.join(seen) or 'nothing'}"
        )


def task_refs(domain: str, split: str | None = None, *, solo: bool = False) -> list[TaskRef]:
    """References to every task of a domain's split (a task-set alias fixes the split); with
    `solo`, only the tasks tau2 runs in solo mode (`solo_tasks`)."""
    name, alias_split = resolve_domain(domain, split)
    backend = get_domain(name)
    chosen = alias_split or backend.default_split()
    tasks = backend.tasks(chosen)
    if solo:
        tasks = solo_tasks(backend, tasks, where=f"{backend.name}/{chosen}")
    return [TaskRef(backend.name, chosen, task.id) for task in tasks]


def list_tasks(
    domain: str, split: str | None = None, *, solo: bool = False
) -> list[dict[str, str]]:
    return [ref.to_row() for ref in task_refs(domain, split, solo=solo)]


def check_solo_domain(backend: Any) -> None:
    """A configuration error unless tau2 runs `backend`'s domain in solo mode."""
    check = getattr(backend, "check_solo", None)
    if check is None:
        raise ConfigError(
            f"solo_mode: domain {backend.name!r} ({backend.benchmark}) has no solo mode; tau2 "
            "offers it for telecom and mock"
        )
    check()


def solo_tasks(
    backend: Any, tasks: Sequence[Any], *, explicit: bool = False, where: str = ""
) -> list[Any]:
    """The tasks of `tasks` that tau2's solo agent runs, as tau2's ``run.py`` filters them.

    Tasks named one by one (`explicit`) are refused instead, naming the first that does not
    qualify and why; so is a selection where none qualifies. Left-out tasks are listed on stderr.
    """
    from tau_adapters.domains.tau2.solo import solo

    check_solo_domain(backend)
    if explicit:
        for task in tasks:
            backend.check_solo(task)
        return list(tasks)
    problems = {task.id: solo().task_problem(task) for task in tasks}
    kept = [task for task in tasks if problems[task.id] is None]
    if not kept:
        raise ConfigError(
            f"solo_mode: no task of {where or backend.name} runs in solo mode "
            f"(tau2's LLMSoloAgent.check_valid_task); choose another split or domain"
        )
    if len(kept) != len(tasks):
        left = "; ".join(f"{tid}: {why}" for tid, why in problems.items() if why is not None)
        print(
            f"solo mode: {len(kept)} of {len(tasks)} tasks of {where or backend.name} run "
            f"(left out, as tau2 does: {left})",
            file=sys.stderr,
        )
    return kept
