"""The `tau-adapters` command line: tasks, eval, score.

Exit codes: 0 success, 2 bad usage or configuration (the message lists valid values), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tau_adapters.errors import ConfigError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    listing = task_commands.add_parser("list", help="print the task ids of a domain/split")
    listing.add_argument("--domain", required=True)
    listing.add_argument("--split", default=None)
    export = task_commands.add_parser("export", help="write task references as JSONL")
    export.add_argument("--domain", required=True, type=_csv, help="comma-separated domains")
    export.add_argument("--split", default=None)
    export.add_argument("--output", required=True, type=Path)
    export.add_argument(
        "--format",
        default="jsonl",
        choices=["jsonl", "slime", "areal"],
        help="jsonl/areal: {domain, split, task_id}; slime: {input, metadata}",
    )

    ev = commands.add_parser("eval", help="run episodes and report pass^k")
    ev.add_argument(
        "--domain",
        default="airline,retail,telecom",
        type=_csv,
        help="comma-separated domains or task sets (default: airline,retail,telecom)",
    )
    ev.add_argument("--split", default=None, help="task split (default: base, or all for mock)")
    ev.add_argument("--num-trials", type=_positive_int, default=1)
    ev.add_argument("--concurrency", type=_positive_int, default=16)
    ev.add_argument("--output", type=Path, default=Path("runs/latest"))
    ev.add_argument("--policy", default="oracle", help="policy spec (default: oracle)")
    ev.add_argument("--user", default="scripted", help="user simulator spec (default: scripted)")
    ev.add_argument("--max-steps", type=_positive_int, default=None)
    ev.add_argument("--max-errors", type=_positive_int, default=None)
    ev.add_argument("--seed", type=int, default=None)
    ev.add_argument("--task-ids", type=_csv, default=None, help="comma-separated task ids")
    ev.add_argument("--num-tasks", type=_positive_int, default=None, help="first N tasks only")
    ev.add_argument("--judge-model", default=None, help="LLM judge for NL_ASSERTION tasks")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    user = ev.add_argument_group("user simulator (--user litellm:MODEL | openai:URL)")
    user.add_argument("--user-model", default=None, help="model name at an OpenAI-compatible URL")
    user.add_argument("--user-api-base", default=None, help="endpoint for litellm models")
    user.add_argument("--user-temperature", type=float, default=None)
    ev.add_argument("--reward", default=None, help="reward shaper: binary, partial, curriculum")
    model = ev.add_argument_group("served policies (--policy sglang:URL | openai:URL)")
    model.add_argument(
        "--tokenizer",
        default=None,
        help="local HF tokenizer folder, or local:chatml|chatml-think|headers",
    )
    model.add_argument("--chat-template", default=None, help="Jinja file replacing the tokenizer's")
    model.add_argument(
        "--chat-template-kwargs", default=None, help='JSON, e.g. {"enable_thinking": false}'
    )
    model.add_argument("--model", default=None, help="model name (OpenAI-compatible endpoints)")
    model.add_argument(
        "--parser", default=None, help="tool-call parser: hermes, json, sglang:<name>"
    )
    model.add_argument("--on-malformed", choices=["observe", "end", "remove"], default=None)
    model.add_argument("--temperature", type=float, default=None)
    model.add_argument("--top-p", type=float, default=None)
    model.add_argument("--max-new-tokens", type=_positive_int, default=None, help="per model turn")
    model.add_argument(
        "--max-response-tokens",
        type=_positive_int,
        default=None,
        help="response-token budget per episode",
    )
    model.add_argument("--max-context-tokens", type=_positive_int, default=None)
    model.add_argument(
        "--check-tokens",
        action="store_true",
        default=None,
        help="compare kept ids with a full re-render; result per episode",
    )
    model.add_argument(
        "--thunderagent",
        action="store_true",
        default=None,
        help="ThunderAgent program_id per episode, released at the end",
    )
    model.add_argument(
        "--no-session-routing",
        dest="session_routing",
        action="store_false",
        default=None,
        help="do not send X-SMG-Routing-Key",
    )
    model.add_argument("--request-timeout", type=float, default=None, help="seconds per request")
    model.add_argument("--request-attempts", type=_positive_int, default=None)

    score = commands.add_parser("score", help="re-score a trajectories.jsonl with tau2's rule")
    score.add_argument("trajectories", type=Path)
    score.add_argument("--output", type=Path, default=None)
    score.add_argument("--judge-model", default=None)

    report = commands.add_parser(
        "report", help="pass^k with CIs and failures of a run, or compare two runs"
    )
    report.add_argument(
        "runs", nargs="+", type=Path, help="one run directory (report) or two (A then B: compare)"
    )
    report.add_argument(
        "--output", type=Path, default=None, help="folder for comparison.json (default: run B)"
    )
    return parser


def _console() -> Any:
    from rich.console import Console

    # Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)


def _cmd_tasks(args: argparse.Namespace) -> int:
    from tau_adapters.tasks import export_task_refs, list_tasks

    if args.tasks_command == "list":
        from rich.table import Table

        refs = list_tasks(args.domain, args.split)
        table = Table(title=f"{args.domain} / {refs[0]['split'] if refs else args.split}")
        table.add_column("#", justify="right")
        table.add_column("task_id")
        for number, ref in enumerate(refs):
            table.add_row(str(number), ref["task_id"])
        _console().print(table)
        print(f"{len(refs)} tasks")
        return 0
    count = export_task_refs(args.domain, args.split, args.output, args.format)
    print(f"wrote {count} task references to {args.output}")
    return 0


def print_summary(summary: dict[str, Any], title: str = "results") -> None:
    """One row per domain: tasks, trials, average reward, pass^1..pass^K, pass@K, terminations."""
    from rich.table import Table

    domains = summary["domains"]
    max_k = max((stats["trials"] for stats in domains.values()), default=0)
    table = Table(title=title)
    for column in ("domain", "tasks", "trials", "avg reward"):
        table.add_column(column, justify="left" if column == "domain" else "right", no_wrap=True)
    for k in range(1, max_k + 1):
        table.add_column(f"pass^{k}", justify="right")
    if max_k:
        table.add_column(f"pass@{max_k}", justify="right")
    table.add_column("terminations")
    table.add_column("status")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for domain, stats in domains.items():
        cells = [domain, str(stats["tasks"]), str(stats["trials"]), fmt(stats["avg_reward"])]
        cells += [fmt(stats["pass_hat_k"].get(str(k))) for k in range(1, max_k + 1)]
        if max_k:
            cells.append(fmt(stats["pass_at_k"].get(str(max_k))))
        cells.append(", ".join(f"{r} {n}" for r, n in sorted(stats["terminations"].items())))
        cells.append(", ".join(f"{r} {n}" for r, n in sorted(stats["statuses"].items())))
        table.add_row(*cells)
    _console().print(table)
    print("pass^k: all k trials of a task succeed (tau-bench); pass@k: at least one of k succeeds.")


def _cmd_eval(args: argparse.Namespace) -> int:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.evaluate import SUMMARY_FILE, TRAJECTORIES_FILE, evaluate

    base = EpisodeConfig.from_env(
        domain=args.domain[0] if args.domain else None,
        policy=args.policy,
        user=args.user,
        max_steps=args.max_steps,
        max_errors=args.max_errors,
        seed=args.seed,
        judge_model=args.judge_model,
        tokenizer=args.tokenizer,
        chat_template=args.chat_template,
        chat_template_kwargs=args.chat_template_kwargs,
        model=args.model,
        parser=args.parser,
        on_malformed=args.on_malformed,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        max_response_tokens=args.max_response_tokens,
        max_context_tokens=args.max_context_tokens,
        check_tokens=args.check_tokens,
        thunderagent=args.thunderagent,
        session_routing=args.session_routing,
        request_timeout_s=args.request_timeout,
        request_attempts=args.request_attempts,
        user_model=args.user_model,
        user_api_base=args.user_api_base,
        user_temperature=args.user_temperature,
        reward=args.reward,
    )
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
        )
    )
    print_summary(summary)
    print(f"wrote {args.output / TRAJECTORIES_FILE} and {args.output / SUMMARY_FILE}")
    try:
        from tau_adapters.report import PLOT_FILE, REPORT_FILE, write_report

        write_report(args.output)
    except Exception as exc:  # the run itself is on disk; a failed report must not fail it
        print(f"tau-adapters: warning: report not written: {exc}", file=sys.stderr)
    else:
        print(f"wrote {args.output / REPORT_FILE} and {args.output / PLOT_FILE}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from tau_adapters.evaluate import read_rows
    from tau_adapters.metrics import summarize
    from tau_adapters.rescore import rescore_rows

    rows = read_rows(args.trajectories)
    if not rows:
        raise ConfigError(f"{args.trajectories}: no trajectories in the file")
    scored = rescore_rows(rows, source=str(args.trajectories), judge_model=args.judge_model)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", encoding="utf-8") as stream:
            for row in scored:
                stream.write(json.dumps(row) + "\n")
    agree = sum(row["agrees"] for row in scored)
    print_summary({"domains": summarize(scored)}, title="re-scored")
    print(f"re-scored {len(scored)} trajectories; {agree} agree with the stored reward")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from tau_adapters.evaluate import TRAJECTORIES_FILE, read_rows
    from tau_adapters.report import (
        COMPARISON_FILE,
        PLOT_FILE,
        REPORT_FILE,
        compare,
        print_comparison,
        print_report,
        write_report,
    )

    runs: list[Path] = args.runs
    if len(runs) > 2:
        raise ConfigError(f"report takes one run directory or two to compare (got {len(runs)})")
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
    comparison = compare(both[0], both[1], label_a=labels[0], label_b=labels[1])
    print_comparison(comparison, _console())
    output = args.output if args.output is not None else runs[1]
    output.mkdir(parents=True, exist_ok=True)
    path = output / COMPARISON_FILE
    path.write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "tasks": _cmd_tasks,
        "eval": _cmd_eval,
        "score": _cmd_score,
        "report": _cmd_report,
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
