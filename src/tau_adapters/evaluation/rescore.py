"""`tau-adapters score`: re-score saved trajectories with tau2's official rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tau_adapters.domains import get_domain, resolve_domain
from tau_adapters.errors import ConfigError

REQUIRED_KEYS = ("domain", "task_id", "messages", "termination_reason")


def rescore_row(row: dict[str, Any], *, judge_model: str | None = None) -> dict[str, Any]:
    """Score one saved row again; returns the official reward next to the stored one."""
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        raise ConfigError(f"missing field(s) {', '.join(missing)}")
    domain_name, _ = resolve_domain(str(row["domain"]))
    backend = get_domain(domain_name)
    task = backend.task(str(row["task_id"]))
    from tau_adapters.episode.row_checks import check_row_identity

    check_row_identity(row, backend, task)
    try:
        messages = backend.tau2.message_adapter().validate_python(row["messages"])
    except Exception as exc:
        raise ConfigError(f"messages are not tau2 messages: {exc}") from None
    from tau_adapters.episode.session import TAU2_TERMINATION_REASON

    reason = str(row["termination_reason"])
    tau2_reason = TAU2_TERMINATION_REASON.get(reason, reason)  # e.g. token_budget -> max_steps
    valid = [r.value for r in backend.tau2.TerminationReason]
    if tau2_reason not in valid:
        raise ConfigError(
            f"termination_reason {reason!r} is not one of {valid + list(TAU2_TERMINATION_REASON)}"
        )
    if row.get("thinking_tool"):  # as the episode was scored: think calls left out
        from tau_adapters.domains.tau2.solo import strip_think

        messages = strip_think(messages)
    if row.get("solo_mode"):
        info = backend.score(task, messages, tau2_reason, judge_model=judge_model, solo_mode=True)
    else:
        info = backend.score(task, messages, tau2_reason, judge_model=judge_model)
    stored = row.get("reward")
    return {
        "domain": backend.name,
        "split": row.get("split"),
        "task_id": task.id,
        "trial": row.get("trial", 0),
        "termination_reason": reason,
        "status": row.get("status"),
        "reward": float(info.reward),
        "stored_reward": stored,
        "agrees": stored is None or abs(float(stored) - float(info.reward)) < 1e-9,
        "reward_info": info.model_dump(mode="json"),
    }


def rescore_rows(
    rows: Sequence[dict[str, Any]], *, source: str = "input", judge_model: str | None = None
) -> list[dict[str, Any]]:
    from tau_adapters.episode.row_checks import check_no_duplicates

    check_no_duplicates(rows, source)
    out = []
    for number, row in enumerate(rows, 1):
        try:
            out.append(rescore_row(row, judge_model=judge_model))
        except ConfigError as exc:
            raise ConfigError(f"{source}: row {number}: {exc}") from None
    return out
