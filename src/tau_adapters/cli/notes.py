"""What the CLI prints under a results table: failed episodes and whether the run is complete.

Failed episodes (engine down, user simulator down, scoring error) are infrastructure, not a zero
score: the metrics leave them out, so the reader must see how many there were and why, right next
to the numbers they would otherwise silently shrink.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from tau_adapters.evaluation.metrics import TOP_FAILURE_REASONS


def any_failed(summary: Mapping[str, Any]) -> bool:
    """True when at least one episode of the summary ended ``failed``."""
    return any(stats.get("failed") for stats in summary.get("domains", {}).values())


def failure_lines(summary: Mapping[str, Any]) -> list[str]:
    """The failed count and the most common reasons over all domains (empty when none failed)."""
    domains = summary.get("domains", {})
    failed = sum(int(stats.get("failed") or 0) for stats in domains.values())
    if not failed:
        return []
    reasons: Counter[str] = Counter()
    for stats in domains.values():
        for entry in stats.get("failure_reasons") or []:
            reasons[str(entry["reason"])] += int(entry["count"])
    episodes = sum(int(stats.get("episodes") or 0) for stats in domains.values())
    lines = [
        f"{failed} of {episodes} episodes FAILED (infrastructure); they are left out of the "
        "scores above. Most common reasons:"
    ]
    lines += [f"  {n}x {reason}" for reason, n in reasons.most_common(TOP_FAILURE_REASONS)]
    return lines


def partial_line(summary: Mapping[str, Any]) -> str | None:
    if not summary.get("partial"):
        return None
    planned = summary.get("planned_episodes")
    of = f" of {planned} planned" if planned else ""
    return f"PARTIAL RUN: {summary.get('episodes')}{of} episodes were written before it stopped"


def print_failures_and_state(summary: Mapping[str, Any]) -> None:
    for line in failure_lines(summary):
        print(line)
    partial = partial_line(summary)
    if partial:
        print(partial)
