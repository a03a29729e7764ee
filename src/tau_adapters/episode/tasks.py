"""Task references (domain, split, task id): listing, export, and loading them back."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tau_adapters.domains import get_domain, resolve_domain


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


def task_refs(domain: str, split: str | None = None) -> list[TaskRef]:
    """References to every task of a domain's split (a task-set alias fixes the split)."""
    name, alias_split = resolve_domain(domain, split)
    backend = get_domain(name)
    chosen = alias_split or backend.default_split()
    return [TaskRef(backend.name, chosen, task.id) for task in backend.tasks(chosen)]


def list_tasks(domain: str, split: str | None = None) -> list[dict[str, str]]:
    return [ref.to_row() for ref in task_refs(domain, split)]
