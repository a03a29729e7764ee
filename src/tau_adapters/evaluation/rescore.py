"""`tau-adapters score`: re-score saved trajectories with tau2's official rule.

A row is re-scored only by the benchmark version that produced it (`versions.check_rescorable`):
another version has other tasks and another grading, so its number would not be the row's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain, resolve_domain
from tau_adapters.errors import ConfigError
from tau_adapters.evaluation.versions import (
    backend_version,
    check_rescorable,
    row_benchmark_version,
)
from tau_adapters.rewards.grading import grading_note, reward_components

REQUIRED_KEYS = ("domain", "task_id", "messages", "termination_reason")


def rescore_row(
    row: dict[str, Any],
    *,
    judge_config: EpisodeConfig | None = None,
    allow_version_mismatch: bool = False,
) -> dict[str, Any]:
    """Score one saved row again; returns the reward next to the stored one.

    `judge_config` carries the judge settings and the grading (default: official, no judge)."""
    config = judge_config if judge_config is not None else EpisodeConfig()
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        raise ConfigError(f"missing field(s) {', '.join(missing)}")
    domain_name, _ = resolve_domain(str(row["domain"]))
    # A knowledge domain is rebuilt with the row's retrieval variant (its tools and scoring
    # depend on it); rows written before rows recorded it ran the default.
    backend = get_domain(domain_name, retrieval_variant=row.get("retrieval_variant"))
    mismatch = check_rescorable(row, backend, allow=allow_version_mismatch)
    task = backend.task(str(row["task_id"]))
    from tau_adapters.episode.row_checks import check_row_identity

    check_row_identity(row, backend, task)
    backend.check_scorable(task, config.judge_model, config.grading)
    try:
        messages = backend.tau2.message_adapter().validate_python(row["messages"])
    except Exception as exc:
        raise ConfigError(f"messages are not tau2 messages: {exc}") from None
    from tau_adapters.domains.base import TAU2_RULES
    from tau_adapters.episode.session import TAU2_TERMINATION_REASON

    reason = str(row["termination_reason"])
    tau2_reason = TAU2_TERMINATION_REASON.get(reason, reason)  # e.g. token_budget -> max_steps
    rules = getattr(backend, "episode_rules", TAU2_RULES)
    valid = [r.value for r in backend.tau2.TerminationReason]
    extra = sorted(rules.extra_termination_reasons)  # e.g. v1's terminate_tool
    if tau2_reason not in valid and tau2_reason not in extra:
        raise ConfigError(
            f"termination_reason {reason!r} is not one of "
            f"{valid + list(TAU2_TERMINATION_REASON) + extra}"
        )
    if row.get("thinking_tool"):  # as the episode was scored: think calls left out
        from tau_adapters.domains.tau2.solo import strip_think

        messages = strip_think(messages)
    limits: dict[str, int] = {}
    if rules.step_limit == "agent_actions":
        # The backend re-derives the ending from the messages; the action limit the episode ran
        # under is in its stored reward_info (v1's 30 when the row does not say).
        stored_info = row.get("reward_info") or {}
        ours = stored_info.get("tau_adapters") if isinstance(stored_info, dict) else None
        limit = ours.get("max_num_steps") if isinstance(ours, dict) else None
        if limit is not None:
            limits["max_actions"] = int(limit)
    judge = None
    if config.grading == "official" and backend.needs_judge(task):
        from tau_adapters.rewards.judge import make_judge

        judge = make_judge(config)
    status = row.get("status")
    error = None
    try:
        info = backend.score(
            task,
            messages,
            tau2_reason,
            judge=judge,
            grading=config.grading,
            solo_mode=bool(row.get("solo_mode")),
            **limits,
        )
    except Exception as exc:
        from tau_adapters.rewards.judge import JudgeError

        if not isinstance(exc, JudgeError):
            raise
        # The judge could not answer: no score for this row (never a 0), the reason kept.
        info, status, error = None, "failed", f"scoring failed: {exc}"
    stored = row.get("reward")
    reward = float(info.reward) if info is not None else None
    out = {
        "domain": backend.name,
        "split": row.get("split"),
        "task_id": task.id,
        "trial": row.get("trial", 0),
        "benchmark": row.get("benchmark", backend.benchmark),
        "benchmark_version": backend_version(backend),
        "stored_benchmark_version": row_benchmark_version(row),
        "termination_reason": reason,
        "status": status,
        "reward": reward,
        "grading": config.grading,
        "reward_components": reward_components(info),
        "stored_reward": stored,
        "agrees": reward is not None
        and (stored is None or abs(float(stored) - float(reward)) < 1e-9),
        "reward_info": info.model_dump(mode="json") if info is not None else None,
    }
    derived = getattr(info, "tau_adapters", None)
    if isinstance(derived, dict) and "ending" in derived:  # v1: the ending seen in the messages
        out["ending"] = derived["ending"]
    if config.grading != "official":
        out["grading_note"] = grading_note(config.grading)
    if judge is not None:
        out["judge"] = judge.describe()
    variant = getattr(backend, "retrieval_variant", None)
    if variant is not None:
        out["retrieval_variant"] = variant
    if error is not None:
        out["error"] = error
    if mismatch is not None:
        out["version_mismatch"] = mismatch
    return out


def rescore_rows(
    rows: Sequence[dict[str, Any]],
    *,
    source: str = "input",
    judge_config: EpisodeConfig | None = None,
    allow_version_mismatch: bool = False,
) -> list[dict[str, Any]]:
    from tau_adapters.episode.row_checks import check_no_duplicates

    check_no_duplicates(rows, source)
    out = []
    for number, row in enumerate(rows, 1):
        try:
            out.append(
                rescore_row(
                    row,
                    judge_config=judge_config,
                    allow_version_mismatch=allow_version_mismatch,
                )
            )
        except ConfigError as exc:
            raise ConfigError(f"{source}: row {number}: {exc}") from None
    return out
