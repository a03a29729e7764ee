"""The `tau-adapters` command line: tasks, eval, score.

Exit codes: 0 success, 2 bad usage or configuration (the message lists valid values), 3 the run
finished but some episodes failed (infrastructure: engine, user simulator, scoring; they are left
out of the scores and listed under the table), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tau_adapters.cli.notes import any_failed
from tau_adapters.core import Status
from tau_adapters.errors import ConfigError

EXIT_USAGE = 2
EXIT_EPISODES_FAILED = 3
EXIT_INTERRUPTED = 130
#: Built-in policies that keep no token ids (``--check-tokens`` has nothing to check).
TEXT_POLICIES = ("oracle", "openai")


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge's settings, derived from `EpisodeConfig`'s ``judge_*`` fields like eval's."""
    from tau_adapters.cli.options import add_config_options
    from tau_adapters.config import EpisodeConfig

    judge = [f for f in EpisodeConfig.model_fields if f.startswith("judge_")]
    add_config_options(parser, only=tuple(judge))


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {value!r}")
    return number


#: More episodes in flight than this gains nothing (engines batch far fewer) and costs memory.
MAX_CONCURRENCY = 4096


def _concurrency(value: str) -> int:
    number = _positive_int(value)
    if number > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(
            f"{number} episodes at once is more than any engine batches; use at most "
            f"{MAX_CONCURRENCY} (with --executor ray, --per-node-concurrency per node)"
        )
    return number


def _domain_names() -> list[str]:
    from tau_adapters.domains.names import domain_names

    try:
        return domain_names()
    except Exception:  # --help must work even when a benchmark package is broken
        return ["airline", "retail", "telecom", "mock", "tau1-airline", "tau1-retail"]


def _field_help(field: str) -> str:
    from tau_adapters.config import EpisodeConfig

    return (EpisodeConfig.model_fields[field].description or "").rstrip(".")


def _status_names() -> list[str]:

    return [status.value for status in Status]


def _statuses(value: str) -> list[str]:
    statuses = _csv(value)
    unknown = [s for s in statuses if s not in _status_names()]
    if unknown or not statuses:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(unknown) or repr(value)}; valid: "
            + ", ".join(_status_names())
        )
    return statuses


def build_parser() -> argparse.ArgumentParser:
    from tau_adapters import __version__

    parser = argparse.ArgumentParser(
        prog="tau-adapters",
        description="Run and score tau2-bench episodes (offline by default: oracle + scripted user).",
    )
    parser.add_argument("--version", action="version", version=f"tau-adapters {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    tasks = commands.add_parser("tasks", help="list or export task references")
    task_commands = tasks.add_subparsers(dest="tasks_command", required=True)
    domain_help = "comma-separated domains or task sets; valid: " + ", ".join(_domain_names())
    listing = task_commands.add_parser("list", help="print the task ids of a domain/split")
    listing.add_argument("--domain", required=True, type=_csv, help=domain_help)
    listing.add_argument("--split", default=None, help=_field_help("split"))
    listing.add_argument(
        "--format",
        default="table",
        choices=["table", "ids", "json"],
        help="table: for people; ids: one task id per line; json: one {domain, split, task_id} "
        "per line (for scripts)",
    )
    export = task_commands.add_parser("export", help="write task references as JSONL")
    export.add_argument("--domain", required=True, type=_csv, help=domain_help)
    export.add_argument("--split", default=None, help=_field_help("split"))
    export.add_argument("--output", required=True, type=Path, help="file to write")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    for sub in (listing, export):
        sub.add_argument(
            "--solo",
            action="store_true",
            help="only the tasks tau2 runs in solo mode (a domain without solo mode fails)",
        )
    export.add_argument(
        "--format",
        default="jsonl",
        choices=["jsonl", "slime", "areal", "skyrl"],
        help="jsonl/areal: {domain, split, task_id}; slime: {input, metadata}; "
        "skyrl: Parquet {data_source, prompt, env_class, reward_spec, extra_info}",
    )

    ev = commands.add_parser(
        "eval", help="run episodes and report pass^k", usage="tau-adapters eval [options]"
    )
    ev.add_argument(
        "--domain",
        default="airline,retail,telecom",
        type=_csv,
        help="comma-separated domains or task sets; valid: " + ", ".join(_domain_names()),
    )
    ev.add_argument("--split", default=None, help=_field_help("split"))
    ev.add_argument(
        "--num-trials", type=_positive_int, default=1, help="trials of each task (pass^k up to k)"
    )
    ev.add_argument(
        "--concurrency",
        type=_concurrency,
        default=16,
        help=f"episodes at once (at most {MAX_CONCURRENCY})",
    )
    ev.add_argument(
        "--output",
        type=Path,
        default=None,
        help="run folder (default: a new runs/eval-<UTC time>); must be new or empty",
    )
    ev.add_argument("--overwrite", action="store_true", help="replace the run in --output")
    ev.add_argument(
        "--resume",
        action="store_true",
        help="finish the interrupted run in --output with the same settings: finished episodes "
        "are kept, the rest run",
    )
    ev.add_argument("--task-ids", type=_csv, default=None, help="comma-separated task ids")
    ev.add_argument("--num-tasks", type=_positive_int, default=None, help="first N tasks only")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ex = ev.add_argument_group("where episodes run (--executor ray needs the `ray` extra)")
    ex.add_argument(
        "--executor", choices=["local", "ray"], default="local", help="where episodes run"
    )
    ex.add_argument("--address", default=None, help="Ray cluster address (default: start one)")
    ex.add_argument(
        "--per-node-concurrency",
        type=_positive_int,
        default=32,
        help="episodes at once on each Ray node (--concurrency caps the total)",
    )
    ex.add_argument(
        "--workers-per-node",
        type=_positive_int,
        default=1,
        help="Ray worker processes per node (an episode's CPU work holds one interpreter)",
    )
    probe = ev.add_argument_group("start-up checks of the served policy and user simulator")
    probe.add_argument(
        "--wait-ready",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the policy endpoint to answer its protocol's probe",
    )
    probe.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the start-up checks that the policy and user-simulator endpoints answer",
    )
    from tau_adapters.cli.options import add_config_options

    ev.set_defaults(config_fields=add_config_options(ev))

    warm = commands.add_parser(
        "export", help="turn eval runs into warm-up data (SFT traces, rejection-sampled)"
    )
    warm.add_argument("runs", nargs="+", type=Path, help="eval run folders (or trajectories.jsonl)")
    warm.add_argument(
        "--format",
        default="sft",
        choices=["sft", "sft-tokens", "tau2"],
        help="sft: OpenAI chat messages + tools; sft-tokens: kept token ids + loss mask; "
        "tau2: tau2's own results file per domain (every episode, no selection)",
    )
    warm.add_argument(
        "--output", required=True, type=Path, help="JSONL file to write (tau2: a folder)"
    )
    warm.add_argument("--min-reward", type=float, default=1.0, help="keep rewards >= this")
    warm.add_argument(
        "--status",
        type=_statuses,
        default="completed",
        help="comma-separated statuses to keep; valid: " + ", ".join(_status_names()),
    )
    warm.add_argument(
        "--per-task",
        type=_positive_int,
        default=None,
        help="at most N episodes per task (best reward, then shortest; unset: all)",
    )
    warm.add_argument("--dedupe", action="store_true", help="drop identical conversations")
    warm.add_argument("--overwrite", action="store_true", help="replace an existing --output")

    score = commands.add_parser("score", help="re-score a trajectories.jsonl with tau2's rule")
    score.add_argument(
        "trajectories", type=Path, help="a trajectories.jsonl (e.g. from `eval --output DIR`)"
    )
    score.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSONL of re-scored rows (official reward, stored reward, whether they agree); "
        "never the input file",
    )
    score.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    _judge_arguments(score)
    score.add_argument(
        "--reward",
        choices=["official", "official-no-judge"],
        default="official",
        help="official (NL assertions need --judge-model) or official-no-judge (NOT the official "
        "score)",
    )
    score.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help="re-score rows written by another benchmark version (the numbers will differ)",
    )

    report = commands.add_parser(
        "report", help="pass^k with CIs and failures of a run, or compare two runs"
    )
    report.add_argument("run", type=Path, help="a run directory (from `eval --output DIR`)")
    report.add_argument(
        "other",
        type=Path,
        nargs="?",
        default=None,
        help="a second run directory: compare RUN (A) with it (B)",
    )
    report.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for comparison.json (default: the current folder)",
    )
    report.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help="compare runs of different benchmark versions or gradings (not comparable numbers)",
    )
    from tau_adapters.cli.help import document_options

    document_options(parser)
    return parser


def _console() -> Any:
    from rich.console import Console

    # Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)


def _cmd_tasks(args: argparse.Namespace) -> int:
    from tau_adapters.episode.tasks import list_tasks
    from tau_adapters.hosts.export import export_task_refs

    if args.tasks_command == "list":
        from rich.table import Table

        for domain in args.domain:
            refs = list_tasks(domain, args.split, solo=args.solo)
            if args.format != "table":
                for ref in refs:
                    print(ref["task_id"] if args.format == "ids" else json.dumps(ref))
                continue
            table = Table(title=f"{domain} / {refs[0]['split'] if refs else args.split}")
            table.add_column("#", justify="right")
            table.add_column("task_id")
            for number, ref in enumerate(refs):
                table.add_row(str(number), ref["task_id"])
            _console().print(table)
            print(f"{len(refs)} tasks")
        return 0
    from tau_adapters.evaluation.run_folder import check_output_file

    check_output_file(args.output, "--output", overwrite=args.overwrite)
    count = export_task_refs(args.domain, args.split, args.output, args.format, solo=args.solo)
    print(f"wrote {count} task references to {args.output}")
    return 0


def print_summary(summary: dict[str, Any], title: str = "results") -> None:
    """One row per domain: tasks, trials, average reward, pass^1..pass^K, pass@K, terminations."""
    from rich.table import Table

    domains = summary["domains"]
    max_k = max((stats["trials"] for stats in domains.values()), default=0)
    unofficial = [d for d, stats in domains.items() if not stats.get("official", True)]
    if unofficial:
        title += " - NOT THE OFFICIAL SCORE for " + ", ".join(unofficial)
    table = Table(title=title)
    for column in ("domain", "tasks", "trials", "failed", "avg reward"):
        table.add_column(column, justify="left" if column == "domain" else "right", no_wrap=True)
    for k in range(1, max_k + 1):
        table.add_column(f"pass^{k}", justify="right")
    if max_k:
        table.add_column(f"pass@{max_k}", justify="right")
    table.add_column("terminations")
    table.add_column("status")
    table.add_column("benchmark / grading")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for domain, stats in domains.items():
        cells = [domain, str(stats["tasks"]), str(stats["trials"]), str(stats.get("failed", 0))]
        cells.append(fmt(stats["avg_reward"]))
        cells += [fmt(stats["pass_hat_k"].get(str(k))) for k in range(1, max_k + 1)]
        if max_k:
            cells.append(fmt(stats["pass_at_k"].get(str(max_k))))
        cells.append(", ".join(f"{r} {n}" for r, n in sorted(stats["terminations"].items())))
        cells.append(", ".join(f"{r} {n}" for r, n in sorted(stats["statuses"].items())))
        versions = ", ".join(stats.get("benchmark_versions") or [])
        cells.append(f"{versions} / {stats.get('grading_note', 'official score')}")
        table.add_row(*cells)
    _console().print(table)
    print("pass^k: all k trials of a task succeed (tau-bench); pass@k: at least one of k succeeds.")
    from tau_adapters.cli.notes import print_failures_and_state
    from tau_adapters.evaluation.user_report import user_header_lines

    for line in user_header_lines(summary.get("user") or {}):  # who played the user; the cache
        print(line)
    print_failures_and_state(summary)


def _cmd_eval(args: argparse.Namespace) -> int:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.evaluation.run import evaluate, plan_jobs, run_settings
    from tau_adapters.evaluation.run_folder import (
        SUMMARY_FILE,
        TRAJECTORIES_FILE,
        check_resume_settings,
        default_run_folder,
        prepare_run_folder,
    )
    from tau_adapters.plugins import check_names, check_user_for_policy, split_spec

    if args.output is None:
        if args.resume:
            raise ConfigError("--resume needs --output, the folder of the run to finish")
        args.output = default_run_folder()
    from tau_adapters.cli.options import config_overrides

    base = EpisodeConfig.from_env(
        domain=args.domain[0] if args.domain else None,
        **config_overrides(args, args.config_fields),
    )
    user_explicit = args.user is not None or any(
        var in os.environ for var in ("TAU_ADAPTERS_USER", "TAU2_USER")
    )
    check_names(base)  # a misspelt name first: it would make every other message misleading
    check_user_for_policy(base, user_explicit=user_explicit)
    if base.check_tokens and split_spec(base.policy)[0] in TEXT_POLICIES:
        raise ConfigError(
            f"--check-tokens compares the token ids a token-level policy kept with a fresh render; "
            f"policy {base.policy!r} keeps no token ids. Use it with --policy sglang:URL, or drop it"
        )
    if not args.no_probe:
        from tau_adapters.agents.endpoint_probe import probe_policy_endpoint, probe_user_endpoint
        from tau_adapters.plugins import make_policy

        make_policy(base.policy, base)  # local settings (e.g. the tokenizer) before the network
        probe_policy_endpoint(base, wait_s=args.wait_ready)
        probe_user_endpoint(base)
    # Every name, task id and setting is checked before the run folder is touched.
    jobs = plan_jobs(
        args.domain,
        base,
        split=args.split,
        num_trials=args.num_trials,
        task_ids=args.task_ids,
        num_tasks=args.num_tasks,
    )
    run_config = run_settings(
        base,
        args.domain,
        split=args.split,
        num_trials=args.num_trials,
        task_ids=args.task_ids,
        num_tasks=args.num_tasks,
    )
    if args.resume:
        check_resume_settings(args.output, run_config)
    existing = prepare_run_folder(args.output, overwrite=args.overwrite, resume=args.resume)
    print(f"results: {args.output}", file=sys.stderr)
    executor = None
    if args.executor == "ray":
        from tau_adapters.evaluation.ray_executor import RayExecutor

        executor = RayExecutor(
            address=args.address,
            per_node=args.per_node_concurrency,
            workers_per_node=args.workers_per_node,
        ).start()
    try:
        summary = asyncio.run(
            evaluate(
                args.domain,
                base,
                output=args.output,
                split=args.split,
                num_trials=args.num_trials,
                concurrency=args.concurrency,
                task_ids=args.task_ids,
                num_tasks=args.num_tasks,
                show_progress=not args.no_progress,
                existing=existing,
                jobs=jobs,
                executor=executor,
            )
        )
    finally:
        if executor is not None:
            executor.close()
    print_summary(summary)
    print(f"wrote {args.output / TRAJECTORIES_FILE} and {args.output / SUMMARY_FILE}")
    try:
        from tau_adapters.evaluation.report import PLOT_FILE, REPORT_FILE, write_report

        write_report(args.output)
    except Exception as exc:  # the run itself is on disk; a failed report must not fail it
        print(f"tau-adapters: warning: report not written: {exc}", file=sys.stderr)
    else:
        print(f"wrote {args.output / REPORT_FILE} and {args.output / PLOT_FILE}")
    return EXIT_EPISODES_FAILED if any_failed(summary) else 0


def _cmd_score(args: argparse.Namespace) -> int:
    from tau_adapters.evaluation.metrics import summarize
    from tau_adapters.evaluation.rescore import rescore_rows
    from tau_adapters.evaluation.run_folder import read_rows

    rows = read_rows(args.trajectories)
    if not rows:
        raise ConfigError(f"{args.trajectories}: no trajectories in the file")
    if args.output is not None:
        from tau_adapters.evaluation.run_folder import check_output_file, write_jsonl_atomic

        check_output_file(
            args.output, "--output", overwrite=args.overwrite, inputs=[args.trajectories]
        )
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.rewards.judge import make_judge

    judge_config = EpisodeConfig.from_env(
        judge_model=args.judge_model,
        judge_model_name=args.judge_model_name,
        judge_api_base=args.judge_api_base,
        reward=args.reward,
    )
    make_judge(judge_config)  # a judge spec that cannot work fails before any row
    scored = rescore_rows(
        rows,
        source=str(args.trajectories),
        judge_config=judge_config,
        allow_version_mismatch=args.allow_version_mismatch,
    )
    if args.output is not None:
        write_jsonl_atomic(args.output, scored)
    agree = sum(row["agrees"] for row in scored)
    print_summary({"domains": summarize(scored)}, title="re-scored")
    print(f"re-scored {len(scored)} trajectories; {agree} agree with the stored reward")
    mismatched = sum(1 for row in scored if row.get("version_mismatch"))
    if mismatched:
        print(f"{mismatched} rows were written by another benchmark version (re-scored anyway)")
    return EXIT_EPISODES_FAILED if any(row["status"] == Status.FAILED for row in scored) else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from tau_adapters.evaluation.report import (
        COMPARISON_FILE,
        PLOT_FILE,
        REPORT_FILE,
        compare,
        print_comparison,
        print_report,
        write_report,
    )
    from tau_adapters.evaluation.run_folder import TRAJECTORIES_FILE, read_rows

    runs: list[Path] = [args.run] if args.other is None else [args.run, args.other]
    if len(runs) == 1:
        report = write_report(runs[0])
        print_report(report, _console())
        print(f"wrote {runs[0] / REPORT_FILE} and {runs[0] / PLOT_FILE}")
        return 0
    both = []
    for run in runs:
        if not (run / TRAJECTORIES_FILE).is_file():
            raise ConfigError(f"{run}: no {TRAJECTORIES_FILE} (is it an `eval --output` folder?)")
        rows = read_rows(run / TRAJECTORIES_FILE)
        if not rows:
            raise ConfigError(f"{run / TRAJECTORIES_FILE}: no trajectories in the file")
        both.append(rows)
    # Folder names label the columns; full paths only when the names alone would not tell apart.
    labels = [run.resolve().name for run in runs]
    if labels[0] == labels[1]:
        labels = [str(run) for run in runs]
    from tau_adapters.evaluation.run_folder import make_folder

    # Where the user asked, or the current folder: never inside run B, which is B's own record.
    output = args.output if args.output is not None else Path(".")
    make_folder(output, "--output")
    comparison = compare(
        both[0],
        both[1],
        label_a=labels[0],
        label_b=labels[1],
        allow_version_mismatch=args.allow_version_mismatch,
    )
    print_comparison(comparison, _console())
    path = output / COMPARISON_FILE
    path.write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from tau_adapters.evaluation.warmup import export

    if args.format == "tau2":
        from tau_adapters.evaluation.tau2_results import export_tau2

        written = export_tau2(args.runs, args.output, overwrite=args.overwrite)
        for path, count in written.items():
            print(f"wrote {count} simulations to {path} (open with: tau2 view --file {path})")
        return 0

    summary = export(
        args.runs,
        args.output,
        fmt=args.format,
        min_reward=args.min_reward,
        statuses=args.status,
        per_task=args.per_task,
        dedupe=args.dedupe,
        overwrite=args.overwrite,
    )
    from rich.table import Table

    table = Table(title=f"export --format {args.format}")
    for column in ("domain", "episodes read", "exported", "tasks", "tasks with a trace"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for domain, stats in summary.to_json()["domains"].items():
        table.add_row(
            domain,
            str(stats["episodes_read"]),
            str(stats["exported"]),
            str(stats["tasks_seen"]),
            str(stats["tasks_with_trace"]),
        )
    _console().print(table)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped.items()) if v)
    print(
        f"wrote {summary.written} rows to {args.output}"
        + (f" (skipped: {skipped})" if skipped else "")
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "tasks": _cmd_tasks,
        "eval": _cmd_eval,
        "score": _cmd_score,
        "report": _cmd_report,
        "export": _cmd_export,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"tau-adapters: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tau-adapters: interrupted; rows written so far are complete", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
