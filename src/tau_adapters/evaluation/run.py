"""`tau-adapters eval`: many episodes concurrently, one JSON line each, a summary at the end."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tau_adapters.agents.thunderagent import ensure_router, policy_protocol
from tau_adapters.config import EpisodeConfig
from tau_adapters.core import Status
from tau_adapters.domains import benchmark_for, benchmark_of, get_domain, resolve_domain
from tau_adapters.episode.rollout import Trajectory, rollout
from tau_adapters.episode.tasks import solo_tasks
from tau_adapters.errors import ConfigError, UnknownNameError
from tau_adapters.evaluation.metrics import summarize
from tau_adapters.evaluation.run_folder import SUMMARY_FILE, TRAJECTORIES_FILE, row_key
from tau_adapters.plugins import make_policy, make_user


@dataclass(frozen=True)
class Job:
    config: EpisodeConfig
    split: str
    task: Any
    trial: int


@dataclass(frozen=True)
class _Block:
    """The tasks of one domain/split under one configuration."""

    config: EpisodeConfig
    split: str
    tasks: tuple[Any, ...]


class Plan:
    """The episodes of a run, made one at a time as they are taken.

    Memory is the task lists, not tasks x trials: a plan of 100,000 trials costs what one trial
    costs, and the first episode starts at once. Order: trial 0 of every task, then trial 1, ...
    `skip` holds the (domain, task id, trial) of episodes already done (a resumed run).
    """

    def __init__(self, blocks: Sequence[_Block], num_trials: int) -> None:
        self.blocks = tuple(blocks)
        self.num_trials = num_trials
        self.skip: frozenset[tuple[str, str, int]] = frozenset()

    def __len__(self) -> int:
        """Planned episodes (done ones included)."""
        return self.num_trials * sum(len(block.tasks) for block in self.blocks)

    def __iter__(self) -> Iterator[Job]:
        for block in self.blocks:
            for trial in range(self.num_trials):
                for task in block.tasks:
                    if (block.config.domain, task.id, trial) not in self.skip:
                        yield Job(block.config, block.split, task, trial)

    def without(self, done: Iterable[tuple[str, str, int]]) -> Plan:
        """The same plan less the episodes in `done`."""
        plan = Plan(self.blocks, self.num_trials)
        plan.skip = frozenset(done)
        return plan

    def remaining(self) -> int:
        planned = {(b.config.domain, t.id) for b in self.blocks for t in b.tasks}
        done = sum(1 for d, t, trial in self.skip if (d, t) in planned and trial < self.num_trials)
        return len(self) - done


def plan_jobs(
    domains: Sequence[str],
    base: EpisodeConfig,
    *,
    split: str | None = None,
    num_trials: int = 1,
    task_ids: Sequence[str] | None = None,
    num_tasks: int | None = None,
) -> Plan:
    """Resolve domains, splits and task ids up front, so that a typo fails before any episode.

    Episodes are not listed: the plan makes them as they are taken (see `Plan`)."""
    if num_trials < 1:
        raise ConfigError(f"num_trials must be >= 1 (got {num_trials})")
    if num_tasks is not None and num_tasks < 1:
        raise ConfigError(f"num_tasks must be >= 1 (got {num_tasks})")
    # Check every name, then build (and so validate) the policy and user once, before anything.
    from tau_adapters.plugins import check_names
    from tau_adapters.runtime.scheduling import cpu_threads

    check_names(base)
    cpu_threads()
    make_policy(base.policy, base)
    if not base.solo_mode:  # solo mode has no user: the configured one is never built
        make_user(base.user, base)
    from tau_adapters.rewards.judge import make_judge

    make_judge(base)  # a judge spec that cannot work fails here, not in every episode
    if task_ids and len(set(task_ids)) != len(task_ids):
        twice = sorted({t for t in task_ids if list(task_ids).count(t) > 1})
        raise ConfigError(f"--task-ids lists {', '.join(twice)} more than once")
    blocks: list[_Block] = []
    seen: dict[tuple[str, str], str] = {}
    for name in domains:
        domain_name, domain_split = resolve_domain(name, split)
        backend = get_domain(domain_name, retrieval_variant=base.retrieval_variant)
        chosen_split = domain_split or backend.default_split()
        if (domain_name, chosen_split) in seen:
            # The same tasks twice would count one run as two trials of each task.
            raise ConfigError(
                f"--domain names {domain_name}/{chosen_split} twice ({seen[domain_name, chosen_split]!r}"
                f" and {name!r}); use --num-trials for more trials"
            )
        seen[domain_name, chosen_split] = name
        tasks = backend.tasks(chosen_split)
        if task_ids:
            known = {task.id: task for task in tasks}
            missing = [tid for tid in task_ids if tid not in known]
            if missing and len(domains) == 1:
                raise UnknownNameError(
                    f"task id of {domain_name}/{chosen_split}", missing[0], sorted(known)
                )
            tasks = [known[tid] for tid in task_ids if tid in known]
        if base.solo_mode:  # before num_tasks: the first N tasks that qualify, as tau2 does
            tasks = solo_tasks(
                backend, tasks, explicit=bool(task_ids), where=f"{domain_name}/{chosen_split}"
            )
        if num_tasks is not None:
            tasks = tasks[:num_tasks]
        config = base.model_copy(update={"domain": domain_name, "split": chosen_split})
        for task in tasks:
            backend.check_scorable(task, config.judge_model, config.grading)
        if tasks:
            blocks.append(_Block(config, chosen_split, tuple(tasks)))
    if not blocks:
        raise ConfigError("no tasks selected: check --domain, --split and --task-ids")
    return Plan(blocks, num_trials)


async def run_job(job: Job) -> dict[str, Any]:
    """One episode in this process, as a trajectories.jsonl row (never raises for an episode)."""
    try:
        trajectory = await rollout(job.task, job.config, trial=job.trial, split=job.split)
        return trajectory.to_row()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # rollout does not raise for episode faults; this is a last guard
        return failed_row(job, f"episode crashed: {exc!r}")


def failed_row(job: Job, reason: str) -> dict[str, Any]:
    """The row of an episode that infrastructure lost (status ``failed``, the reason kept)."""
    row = Trajectory.failed(
        job.config.domain,
        job.split,
        job.task.id,
        trial=job.trial,
        seed=job.config.seed + job.trial,
        error=reason,
    ).to_row()
    row["benchmark_version"] = _benchmark_version(job.config.domain)
    return row


def _benchmark_version(domain: str) -> str | None:
    """The installed release of the benchmark that owns `domain` (None if it cannot be read)."""
    try:
        return benchmark_for(domain).version()
    except Exception:
        return None


def _write_line(stream: IO[str], row: dict[str, Any]) -> None:
    # One write per complete line, flushed: an interrupted run leaves valid JSONL behind.
    stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    stream.flush()


#: Row fields the summary needs; the rest (messages, tokens) stays on disk only.
#: The fields `write_summary` reads (metrics, provenance, the user's part); the rest of a row
#: (messages, transcripts) stays on disk only.
SUMMARY_FIELDS = ("domain", "split", "task_id", "trial", "reward", "status", "termination_reason",
                  "error", "benchmark", "benchmark_version", "grading", "user_fingerprint",
                  "user_side", "usage")  # fmt: skip


def _slim(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in SUMMARY_FIELDS}


async def run_jobs(
    jobs: Iterable[Job],
    *,
    concurrency: int,
    output: Path,
    show_progress: bool = True,
    existing: Sequence[dict[str, Any]] = (),
    runner: Callable[[Job], Awaitable[dict[str, Any]]] = run_job,
    total: int | None = None,
    into: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run jobs with at most `concurrency` at once; rows are appended as episodes finish.

    `concurrency` workers take jobs from `jobs` one at a time, so a plan of any size starts at
    once, holds `concurrency` episodes in memory, and an interrupt cancels `concurrency` tasks,
    not the whole plan. `existing` rows (a resumed run's finished episodes) are written first.
    Returns every row in slim form (the fields a summary needs; the full rows are on disk),
    appended to `into` as they come, so that an interrupted caller still has them.
    `runner` runs one episode and returns its row: `run_job` here, or an executor's (Ray)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1 (got {concurrency})")
    output.mkdir(parents=True, exist_ok=True)
    if total is None:
        jobs = list(jobs)
        total = len(jobs)
    rows: list[dict[str, Any]] = into if into is not None else []
    rows.extend(_slim(row) for row in existing)
    progress = Progress(
        TextColumn("[bold]eval[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("avg reward {task.fields[avg]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
    )
    with (output / TRAJECTORIES_FILE).open("w", encoding="utf-8") as stream, progress:
        bar = progress.add_task("eval", total=total, avg=0.0)
        for row in existing:
            _write_line(stream, row)
        pending = iter(jobs)
        state = {"reward": 0.0, "done": 0}

        async def worker() -> None:
            for job in pending:  # one shared iterator: each job is taken by exactly one worker
                row = await runner(job)
                _write_line(stream, row)
                rows.append(_slim(row))
                state["reward"] += float(row["reward"])
                state["done"] += 1
                progress.update(bar, advance=1, avg=state["reward"] / state["done"])

        workers = [asyncio.ensure_future(worker()) for _ in range(max(1, min(concurrency, total)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    return rows


def run_settings(
    base: EpisodeConfig,
    domains: Sequence[str],
    *,
    split: str | None,
    num_trials: int,
    task_ids: Sequence[str] | None,
    num_tasks: int | None,
) -> dict[str, Any]:
    """What a run records as its configuration (and what `--resume` must match).

    The base config's single ``domain``/``split`` are dropped: a run has ``domains`` (and a split
    per domain, recorded as given)."""
    settings = {k: v for k, v in base.model_dump().items() if k not in ("domain", "split")}
    return {
        **settings,
        "domains": list(domains),
        "split": split,
        "num_trials": num_trials,
        "task_ids": list(task_ids) if task_ids else None,
        "num_tasks": num_tasks,
    }


def write_summary(
    output: Path,
    rows: Sequence[dict[str, Any]],
    config: dict[str, Any],
    *,
    partial: bool = False,
    wall_s: float | None = None,
    planned_episodes: int | None = None,
) -> dict[str, Any]:
    from tau_adapters import __version__
    from tau_adapters.evaluation.versions import provenance

    summary: dict[str, Any] = {
        # Benchmark versions, task sets and grading of the rows (not the official score unless
        # ``official`` is true).
        "provenance": provenance(rows),
        "domains": summarize(rows),
        "config": config,
        "partial": partial,
        "episodes": len(rows),
        "planned_episodes": planned_episodes,
        "failed": sum(1 for row in rows if row.get("status") == Status.FAILED),
        "wall_s": wall_s,
        "tau_adapters_version": __version__,
    }
    from tau_adapters.evaluation.user_report import user_summary

    summary["user"] = user_summary(rows)
    if config.get("user_cache") and summary["user"]["cache"] is not None:
        summary["user"]["cache"]["folder"] = config["user_cache"]
    try:
        from tau_adapters.domains.tau2.api import api

        summary["tau2_version"] = api().version
    except Exception:
        summary["tau2_version"] = None
    if any(benchmark_of(name) == "tau1" for name in summary["domains"]):
        from tau_adapters.domains.tau1.api import TAU1_COMMIT, api1

        summary["tau_bench_version"] = f"{api1().version} ({TAU1_COMMIT})"
    # Which release produced the numbers (`report`/`score` refuse to mix them): one label, or
    # labels joined by " + " when the run spans benchmarks.
    versions = sorted(
        {v for v in (_benchmark_version(name) for name in summary["domains"]) if v is not None}
    )
    summary["config"] = {**config, "benchmark_version": " + ".join(versions) or None}
    from tau_adapters.runtime.files import atomic_open

    with atomic_open(output / SUMMARY_FILE) as stream:  # never half a summary
        stream.write(json.dumps(summary, indent=2) + "\n")
    return summary


async def evaluate(
    domains: Sequence[str],
    base: EpisodeConfig,
    *,
    output: Path,
    split: str | None = None,
    num_trials: int = 1,
    concurrency: int = 8,
    task_ids: Sequence[str] | None = None,
    num_tasks: int | None = None,
    show_progress: bool = True,
    existing: Sequence[dict[str, Any]] = (),
    jobs: Plan | None = None,
    executor: Any | None = None,
) -> dict[str, Any]:
    """Plan, run and summarise an evaluation; returns the summary written to ``summary.json``.

    `existing`: finished rows of an interrupted run (see `run_folder.prepare_run_folder`); their
    (domain, task, trial) are not run again and the summary covers them too. `jobs`: the plan,
    when the caller already made it (with the same arguments) to validate before any output.
    ``executor`` (e.g. `tau_adapters.evaluation.ray_executor.RayExecutor`, started) runs the episodes
    elsewhere; rows, files and the summary are the same as a local run's."""
    if jobs is None:
        jobs = plan_jobs(
            domains,
            base,
            split=split,
            num_trials=num_trials,
            task_ids=task_ids,
            num_tasks=num_tasks,
        )
    planned = len(jobs)
    if existing:
        jobs = jobs.without(row_key(row) for row in existing)
    served = policy_protocol(base.policy)
    if served is not None:  # what the endpoint is (ThunderAgent build?); refuse what cannot work
        info = await ensure_router(served[1], served[0], thunderagent=base.thunderagent)
        print(f"policy endpoint {info.describe()}", file=sys.stderr)
    run_config = {
        **run_settings(
            base,
            domains,
            split=split,
            num_trials=num_trials,
            task_ids=task_ids,
            num_tasks=num_tasks,
        ),
        "concurrency": concurrency,
    }
    # The settings are on disk before the first episode: an interrupted run (even one killed
    # outright) can be resumed, and `--resume` checks it is resumed with the same settings.
    output.mkdir(parents=True, exist_ok=True)
    write_summary(output, existing, run_config, partial=True, planned_episodes=planned)
    if executor is not None:  # at most per-node concurrency on each node
        concurrency = min(concurrency, executor.capacity)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    partial = True
    try:
        await run_jobs(
            jobs,
            concurrency=concurrency,
            output=output,
            show_progress=show_progress,
            existing=existing,
            runner=executor.run if executor is not None else run_job,
            total=jobs.remaining(),
            into=rows,
        )
        partial = False
    finally:
        if executor is not None:
            run_config["executor"] = executor.describe()
        summary = write_summary(
            output,
            rows,
            run_config,
            partial=partial,
            wall_s=time.perf_counter() - started,
            planned_episodes=planned,
        )
    return summary
