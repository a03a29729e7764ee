"""Task references (domain, split, task id): listing, export, and loading them back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
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


#: Row formats of `export_task_refs`.
EXPORT_FORMATS = ("jsonl", "slime", "areal")


def export_row(ref: TaskRef, fmt: str = "jsonl") -> dict[str, Any]:
    """One dataset row. ``slime``: ``input`` (the reference as text) and ``metadata`` (the
    reference), for slime's default ``--input-key input --metadata-key metadata``. ``areal``:
    the reference itself, the row `tau_adapters.areal` workflows read."""
    if fmt == "slime":
        return {"input": f"{ref.domain}/{ref.split}/{ref.task_id}", "metadata": ref.to_row()}
    return ref.to_row()


def export_task_refs(
    domains: Sequence[str] | str, split: str | None, output: Path, fmt: str = "jsonl"
) -> int:
    """Write one JSON line per task (format `fmt`); returns how many."""
    if fmt not in EXPORT_FORMATS:
        from tau_adapters.errors import UnknownNameError

        raise UnknownNameError("export format", fmt, EXPORT_FORMATS)
    names = [domains] if isinstance(domains, str) else list(domains)
    refs = [ref for name in names for ref in task_refs(name, split)]
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as stream:
        for ref in refs:
            stream.write(json.dumps(export_row(ref, fmt)) + "\n")
    return len(refs)
