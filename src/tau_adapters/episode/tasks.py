"""Task references (domain, split, task id): listing, export, and loading them back."""

from __future__ import annotations

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


def task_refs(domain: str, split: str | None = None) -> list[TaskRef]:
    """References to every task of a domain's split (a task-set alias fixes the split)."""
    name, alias_split = resolve_domain(domain, split)
    backend = get_domain(name)
    chosen = alias_split or backend.default_split()
    return [TaskRef(backend.name, chosen, task.id) for task in backend.tasks(chosen)]


def list_tasks(domain: str, split: str | None = None) -> list[dict[str, str]]:
    return [ref.to_row() for ref in task_refs(domain, split)]
