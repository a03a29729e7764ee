"""`tau-adapters export RUN --format tau2`: a run as tau2's own results files.

tau2's tools read a ``Results`` JSON per domain (run info, the tasks, one ``SimulationRun`` per
episode). Writing our runs in that form lets ``tau2 view --file F`` and tau2's metrics code open
them. The files are built with tau2's own pydantic models, so whatever tau2 validates on load holds.

Mapping: each trajectory row becomes a ``SimulationRun`` with its tau2 messages, ``RewardInfo``,
trial, seed and duration. A termination reason tau2 does not know (ours for token budgets) is written
as tau2's own reason for the episode when the row has one, else ``max_steps`` for truncated and
``agent_error`` otherwise. ``failed`` episodes (infrastructure) are written the way tau2 writes a
sample it skipped after an error: ``skipped=True`` and, when the episode has no ``RewardInfo``,
``reward 0.0``. tau2's own metrics count such samples as zeros (ours leave them out and report them
beside the scores), so compare pass^k from the two only on runs without failed episodes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tau_adapters.core import Status
from tau_adapters.errors import ConfigError


def _termination(row: dict[str, Any], valid: set[str]) -> str:
    reason = str(row.get("termination_reason"))
    if reason in valid:
        return reason
    tau2_reason = row.get("tau2_termination_reason")
    if tau2_reason in valid:
        return str(tau2_reason)
    return "max_steps" if row.get("status") == Status.TRUNCATED else "agent_error"


def results_for_domain(domain_name: str, rows: Sequence[dict[str, Any]], config: dict) -> Any:
    """tau2 ``Results`` for the rows of one domain."""
    from tau_adapters.domains import get_domain
    from tau_adapters.domains.tau2.api import results_types

    types = results_types()
    domain = get_domain(domain_name)
    t = domain.tau2
    valid = {reason.value for reason in t.TerminationReason}
    adapter = t.message_adapter()
    simulations = []
    task_ids: list[str] = []
    for number, row in enumerate(rows, 1):
        where = f"{domain_name} row {number} (task {row.get('task_id')})"
        try:
            messages = adapter.validate_python(row["messages"])
        except Exception as exc:
            raise ConfigError(f"{where}: messages are not tau2 messages: {exc}") from None
        if row.get("thinking_tool"):  # tau2 26.3 cannot replay think calls: leave them out
            from tau_adapters.domains.tau2.solo import strip_think

            messages = strip_think(messages)
        stamps = [m.timestamp for m in messages if getattr(m, "timestamp", None)]
        task_id = str(row["task_id"])
        if task_id not in task_ids:
            task_ids.append(task_id)
        simulations.append(
            t.SimulationRun(
                id=f"{domain_name}-{task_id}-trial{row.get('trial', 0)}",
                task_id=task_id,
                start_time=stamps[0] if stamps else "",
                end_time=stamps[-1] if stamps else "",
                duration=float(row.get("duration_s") or 0.0),
                termination_reason=_termination(row, valid),
                reward_info=row.get("reward_info") or {"reward": 0.0},
                messages=messages,
                trial=row.get("trial"),
                seed=row.get("seed"),
                skipped=row.get("status") == Status.FAILED,
            )
        )
    from tau_adapters import __version__

    solo = bool(config.get("solo_mode")) or any(row.get("solo_mode") for row in rows)
    info = types.Info(
        git_commit=f"tau-adapters {__version__}",
        num_trials=int(config.get("num_trials") or 1 + max(r.get("trial", 0) for r in rows)),
        max_steps=int(config.get("max_steps") or 200),
        max_errors=int(config.get("max_errors") or 10),
        # Solo runs are labelled with tau2's own names for its solo agent and dummy user.
        user_info=types.UserInfo(
            implementation="dummy_user" if solo else str(config.get("user") or "unknown"),
            llm=None if solo else config.get("user_model"),
        ),
        agent_info=types.AgentInfo(
            implementation=f"llm_agent_solo ({config.get('policy')})"
            if solo
            else str(config.get("policy") or "unknown"),
            llm=config.get("model"),
        ),
        environment_info=domain.environment(solo_mode=solo).get_info(),
        seed=config.get("seed"),
    )
    tasks = [domain.task(task_id) for task_id in task_ids]
    return types.Results(info=info, tasks=tasks, simulations=simulations)


def export_tau2(runs: Sequence[Path], output: Path, *, overwrite: bool = False) -> dict[str, int]:
    """Write ``OUTPUT/<domain>.json`` (tau2 ``Results``) for every domain in ``runs``; returns
    the number of simulations written per file."""
    from tau_adapters.domains import benchmark_of, resolve_domain
    from tau_adapters.evaluation.warmup import load_run

    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; --format tau2 writes one file per domain")
    loaded = [load_run(Path(path)) for path in runs]
    by_domain: dict[str, list[dict[str, Any]]] = defaultdict(list)
    config: dict[str, Any] = {}
    for run in loaded:
        config = config or run.config
        for row in run.rows:
            name = resolve_domain(str(row["domain"]))[0]
            if benchmark_of(name) != "tau2":
                raise ConfigError(
                    f"{run.path}: {name} is a tau-bench v1 domain; --format tau2 writes tau2's "
                    "results files (use --format sft, or the run's trajectories.jsonl)"
                )
            by_domain[name].append(row)
    targets = {domain: output / f"{domain}.json" for domain in by_domain}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{', '.join(existing)} exist(s); pass --overwrite to replace")
    built = {domain: results_for_domain(domain, rows, config) for domain, rows in by_domain.items()}
    try:
        output.mkdir(parents=True, exist_ok=True)
        for domain, results in built.items():
            tmp = targets[domain].with_suffix(".json.tmp")
            tmp.write_text(results.model_dump_json(indent=2), encoding="utf-8")
            tmp.replace(targets[domain])
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from None
    return {str(targets[d]): len(r.simulations) for d, r in built.items()}
