"""Reports on finished runs: pass^k with bootstrap confidence intervals, failure breakdowns,
a pass^k plot, and an A/B comparison of two runs.

Everything here reads the rows of ``trajectories.jsonl`` (no tau2 needed), so a run can be
re-reported or compared long after it finished. Point estimates come from `tau_adapters.evaluation.metrics`,
so a report always agrees with ``summary.json``; the intervals resample *tasks* (not episodes),
because trials of one task are correlated and the task is the unit the benchmark samples.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tau_adapters.core import Status
from tau_adapters.errors import ConfigError
from tau_adapters.evaluation.metrics import is_failed, is_success, pass_at_k, pass_hat_k, summarize
from tau_adapters.evaluation.versions import check_comparable, header_lines, provenance

if TYPE_CHECKING:
    from rich.console import Console

REPORT_FILE = "report.json"
PLOT_FILE = "pass_hat_k.png"
COMPARISON_FILE = "comparison.json"

REQUIRED_KEYS = ("domain", "task_id", "trial", "status", "termination_reason", "reward")
TOP_ERRORS = 5
ERROR_CHARS = 200
PASS_THRESHOLD = 0.5

Row = Mapping[str, Any]


# --------------------------------------------------------------------------- validation


def _check_rows(rows: Iterable[Row]) -> list[Row]:
    """Fail early, naming the row, rather than report numbers built from half-read data."""
    checked: list[Row] = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, Mapping):
            raise ConfigError(f"row {number}: expected a JSON object, got {type(row).__name__}")
        missing = [key for key in REQUIRED_KEYS if key not in row]
        where = f"row {number} (domain={row.get('domain')!r}, task_id={row.get('task_id')!r})"
        if missing:
            raise ConfigError(
                f"{where} is missing {', '.join(repr(k) for k in missing)}; "
                "reports need the rows `tau-adapters eval` writes to trajectories.jsonl"
            )
        if row["domain"] is None or row["task_id"] is None:
            raise ConfigError(f"{where}: domain and task_id must not be null")
        reward = row["reward"]
        if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
            raise ConfigError(f"{where}: reward must be a number or null, got {reward!r}")
        checked.append(row)
    return checked


def _reward(row: Row) -> float:
    # A null reward (an episode that crashed before scoring) counts as 0, as in metrics.summarize.
    return float(row.get("reward") or 0.0)


def _number(mapping: Any, key: str) -> float | None:
    if not isinstance(mapping, Mapping):
        return None
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(row: Row, key: str) -> int:
    value = _number(row.get("counts"), key)
    return int(value) if value is not None else 0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _task_counts(rows: Iterable[Row]) -> dict[str, tuple[int, int]]:
    """(trials, successes) per task id, the input of metrics.pass_hat_k / pass_at_k.

    Failed episodes (infrastructure) are left out, as in metrics.summarize."""
    outcomes: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        if is_failed(row):
            continue
        outcomes[str(row["task_id"])].append(is_success(_reward(row)))
    return {task: (len(hits), sum(hits)) for task, hits in outcomes.items()}


# --------------------------------------------------------------------------- report


def _with_intervals(
    counts: list[tuple[int, int]],
    point: Mapping[str, float | None],
    metric: Any,
    *,
    bootstrap: int,
    seed: int,
    confidence: float,
) -> dict[str, dict[str, Any]]:
    """Percentile-bootstrap CIs over tasks for each k of `point` (values from metrics.summarize).

    The interval is widened to include its point estimate: with few tasks (or a degenerate sample)
    the mean of resampled floats can sit an ulp away from the point value, and an interval that
    excludes its own estimate only confuses readers.
    """
    ks = [int(k) for k in point]
    result: dict[str, dict[str, Any]] = {}
    if not ks:
        return result
    if bootstrap < 1 or not counts:
        return {str(k): {"value": point[str(k)], "ci": None} for k in ks}
    import numpy as np

    # Per-task values, computed by the same function as the point estimate (one task at a time).
    # k never exceeds the fewest trials of any task, so every task has a value for every k.
    values = np.array([[metric([(n, c)], k) for k in ks] for n, c in counts], dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(counts), size=(bootstrap, len(counts)))
    resampled = values[picks].mean(axis=1)  # (bootstrap, len(ks))
    tail = (1.0 - confidence) / 2.0 * 100.0
    for column, k in enumerate(ks):
        value = point[str(k)]
        if value is None:
            result[str(k)] = {"value": value, "ci": None}
            continue
        low, high = np.percentile(resampled[:, column], [tail, 100.0 - tail])
        low = max(0.0, min(float(low), value))
        high = min(1.0, max(float(high), value))
        result[str(k)] = {"value": value, "ci": [low, high]}
    return result


def _failures(rows: Sequence[Row]) -> dict[str, Any]:
    """Why episodes went wrong, and what they cost: the numbers to look at before the rewards."""
    tool_errors = [_count(row, "tool_errors") for row in rows]
    rejected = [_count(row, "rejected_turns") for row in rows]
    failed = [row for row in rows if row.get("status") == Status.FAILED]
    errors = Counter(
        str(row.get("error"))[:ERROR_CHARS] for row in failed if row.get("error") is not None
    )
    agent_turns = [_number(row.get("counts"), "agent_turns") for row in rows]
    response_tokens = [_number(row.get("counts"), "response_tokens") for row in rows]
    durations = [_number(row, "duration_s") for row in rows]
    user_usage = [
        row["usage"]["user"]
        for row in rows
        if isinstance(row.get("usage"), Mapping) and isinstance(row["usage"].get("user"), Mapping)
    ]
    user_costs = [c for c in (_number(usage, "cost") for usage in user_usage) if c is not None]
    user_tokens: int | None = None
    if user_usage:
        user_tokens = 0
        for usage in user_usage:
            total = _number(usage, "total_tokens")
            if total is None:
                total = (_number(usage, "prompt_tokens") or 0.0) + (
                    _number(usage, "completion_tokens") or 0.0
                )
            user_tokens += int(total)
    return {
        "terminations": dict(Counter(str(row.get("termination_reason")) for row in rows)),
        "statuses": dict(Counter(str(row.get("status")) for row in rows)),
        "tool_errors": {
            "total": sum(tool_errors),
            "episodes_with_any": sum(1 for n in tool_errors if n > 0),
        },
        "parse_errors": {
            "total": sum(rejected),
            "episodes_with_any": sum(1 for n in rejected if n > 0),
        },
        "user_simulator_errors": sum(
            1 for row in rows if row.get("termination_reason") == "user_error"
        ),
        "failed_episodes": {
            "count": len(failed),
            "top_errors": [
                {"error": error, "count": n} for error, n in errors.most_common(TOP_ERRORS)
            ],
        },
        "avg_agent_turns": _mean([v for v in agent_turns if v is not None]),
        "avg_response_tokens": _mean([v for v in response_tokens if v is not None]),
        "avg_duration_s": _mean([v for v in durations if v is not None]),
        "avg_user_cost": _mean(user_costs),
        "total_user_tokens": user_tokens,
    }


def _block(
    rows: Sequence[Row],
    stats: Mapping[str, Any],
    counts: list[tuple[int, int]],
    *,
    bootstrap: int,
    seed: int,
    confidence: float,
) -> dict[str, Any]:
    options: dict[str, Any] = {"bootstrap": bootstrap, "seed": seed, "confidence": confidence}
    return {
        "tasks": stats["tasks"],
        "trials": stats["trials"],
        "episodes": stats["episodes"],
        "scored": stats["scored"],
        "failed": stats["failed"],
        "failure_reasons": stats["failure_reasons"],
        "avg_reward": stats["avg_reward"],
        "pass_hat_k": _with_intervals(counts, stats["pass_hat_k"], pass_hat_k, **options),
        "pass_at_k": _with_intervals(counts, stats["pass_at_k"], pass_at_k, **options),
        "failures": _failures(rows),
    }


def build_report(
    rows: Iterable[Row], *, bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """Per-domain and overall pass^k / pass@k with bootstrap CIs, plus a failure breakdown.

    Each domain is bootstrapped with a fresh generator seeded by `seed`, so adding a domain to a
    run does not move another domain's intervals. ``overall`` pools the tasks of all domains (a
    task is a (domain, task_id) pair) and resamples that pool. ``bootstrap=0`` gives ``ci: None``.
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be between 0 and 1 (got {confidence})")
    if bootstrap < 0:
        raise ConfigError(f"bootstrap must be >= 0 resamples (got {bootstrap})")
    checked = _check_rows(rows)
    options: dict[str, Any] = {"bootstrap": bootstrap, "seed": seed, "confidence": confidence}
    stats = summarize(checked)
    by_domain: dict[str, list[Row]] = defaultdict(list)
    for row in checked:
        by_domain[str(row["domain"])].append(row)
    domains = {
        domain: _block(
            by_domain[domain],
            stats[domain],
            list(_task_counts(by_domain[domain]).values()),
            **options,
        )
        for domain in stats
    }
    # Overall: one pseudo-domain whose task ids carry their domain, so equal ids never merge.
    pooled = [
        {**row, "domain": "overall", "task_id": f"{row['domain']}/{row['task_id']}"}
        for row in checked
    ]
    overall_stats = summarize(pooled).get("overall")
    overall = (
        _block(pooled, overall_stats, list(_task_counts(pooled).values()), **options)
        if overall_stats is not None
        else None
    )
    from tau_adapters.evaluation.user_report import user_summary

    return {
        # Which benchmark version, task sets and grading produced these numbers (the header).
        "provenance": provenance(checked),
        "domains": domains,
        "overall": overall,
        "user": user_summary(checked),
        "bootstrap": {
            "resamples": bootstrap,
            "seed": seed,
            "confidence": confidence,
            "unit": "task",
        },
    }


# --------------------------------------------------------------------------- plot


#: Marker per domain, so that domains with the same values stay distinguishable.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Horizontal spread of the domains around each k (in units of k): overlapping points separate.
DODGE = 0.12


def task_order(task_id: Any) -> tuple[Any, ...]:
    """Natural order of task ids: ``5`` before ``49`` before ``51``; text parts as text."""
    import re

    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", str(task_id))
        if part
    )


def pass_hat_k_figure(
    report: Mapping[str, Any],
    *,
    width_px: int = 800,
    height_px: int = 500,
    dpi: int = 100,
    run: str | None = None,
) -> Any:
    """The pass^k figure (a matplotlib `Figure` on a bare Agg canvas; nothing global touched).

    One line per domain with its CI band. Ticks sit on whole trials only; domains are dodged
    a little sideways and get their own marker, so equal values (one trial, all 1.0) stay visible.
    The title names the `run` and says when it is partial (``report["partial"]``); a run with
    nothing to draw says why in the plot instead of showing empty axes.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plotting pass^k needs matplotlib: pip install matplotlib") from None
    if width_px < 1 or height_px < 1 or dpi < 1:
        raise ConfigError(f"bad image size {width_px}x{height_px} px at {dpi} dpi")
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    max_k = 1
    drawn = [
        (domain, points)
        for domain, block in report.get("domains", {}).items()
        if (
            points := [
                (k, entry)
                for k, entry in sorted((int(k), e) for k, e in block["pass_hat_k"].items())
                if entry["value"] is not None
            ]
        )
    ]
    count = len(drawn)
    for index, (domain, points) in enumerate(drawn):
        shift = (index - (count - 1) / 2) * (DODGE / max(count - 1, 1)) if count > 1 else 0.0
        ks = [k for k, _ in points]
        xs = [k + shift for k in ks]
        max_k = max(max_k, ks[-1])
        (line,) = axes.plot(
            xs,
            [entry["value"] for _, entry in points],
            marker=MARKERS[index % len(MARKERS)],
            label=str(domain),
        )
        banded = [
            (x, entry["ci"]) for x, (_, entry) in zip(xs, points, strict=True) if entry.get("ci")
        ]
        if banded:
            axes.fill_between(
                [x for x, _ in banded],
                [ci[0] for _, ci in banded],
                [ci[1] for _, ci in banded],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    confidence = report.get("bootstrap", {}).get("confidence")
    band = f" (bands: {confidence:.0%} bootstrap CI over tasks)" if confidence else ""
    title = f"pass^k: all k trials of a task succeed{band}"
    state = report.get("partial")
    if state:
        planned = state.get("planned_episodes")
        title += f"\nPARTIAL RUN: {state.get('episodes')}" + (
            f" of {planned} episodes" if planned else " episodes"
        )
    if run:
        title = f"{run}\n{title}"
    axes.set_title(title, fontsize=10)
    if not drawn:
        failed = sum(int(b.get("failed") or 0) for b in report.get("domains", {}).values())
        why = f"{failed} failed (infrastructure), none scored" if failed else "no scored episode"
        axes.text(
            0.5,
            0.5,
            f"nothing to plot: {why}\n(see report.json and the failures table)",
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
    axes.set_xlabel("k (trials)")
    axes.set_ylabel("pass^k")
    axes.set_ylim(-0.02, 1.04)  # markers at 0 and 1 stay whole
    axes.set_xlim(0.8 - DODGE / 2, max_k + 0.2 + DODGE / 2)
    step = max(1, -(-max_k // 10))  # at most ~10 ticks, always whole trials
    axes.set_xticks(list(range(1, max_k + 1, step)))
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best")
    figure.tight_layout()  # moves the axes inside the figure; the figure keeps its size
    return figure


def plot_pass_hat_k(
    report: Mapping[str, Any],
    path: str | Path,
    *,
    width_px: int = 800,
    height_px: int = 500,
    dpi: int = 100,
    run: str | None = None,
) -> Path:
    """Draw `pass_hat_k_figure` into a PNG of exact pixel size.

    The exact size (no ``bbox_inches="tight"``) keeps images of different runs comparable side by
    side.
    """
    figure = pass_hat_k_figure(report, width_px=width_px, height_px=height_px, dpi=dpi, run=run)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=dpi)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


# --------------------------------------------------------------------------- comparison


def _pass_hat(counts: Mapping[str, tuple[int, int]], k: int | None) -> float | None:
    return pass_hat_k(counts.values(), k) if counts and k else None


def _side(a: float | None, b: float | None) -> dict[str, float | None]:
    delta = b - a if a is not None and b is not None else None
    return {"a": a, "b": b, "delta": delta}


def compare(
    rows_a: Iterable[Row],
    rows_b: Iterable[Row],
    *,
    label_a: str = "A",
    label_b: str = "B",
    allow_version_mismatch: bool = False,
) -> dict[str, Any]:
    """What changed from run A to run B: metric deltas per domain and the tasks that flipped.

    Each side's metrics are over that run's own tasks (as in its report); pass^k uses the largest
    k both runs have trials for. A task passes in a run when at least half its trials succeed.
    Deltas are B - A. Runs of different benchmark versions or gradings are refused (`ConfigError`)
    unless `allow_version_mismatch`; the differences are then kept in ``mismatch``.
    """
    checked_a, checked_b = _check_rows(rows_a), _check_rows(rows_b)
    mismatch = check_comparable(
        checked_a,
        checked_b,
        label_a=label_a,
        label_b=label_b,
        allow=allow_version_mismatch,
    )
    stats_a, stats_b = summarize(checked_a), summarize(checked_b)
    domains: dict[str, Any] = {}
    flipped: dict[str, dict[str, list[str]]] = {}
    for domain in sorted(set(stats_a) | set(stats_b)):
        rows_of_a = [row for row in checked_a if str(row["domain"]) == domain]
        rows_of_b = [row for row in checked_b if str(row["domain"]) == domain]
        tasks_a, tasks_b = _task_counts(rows_of_a), _task_counts(rows_of_b)
        sa, sb = stats_a.get(domain), stats_b.get(domain)
        k = min(sa["trials"], sb["trials"]) if sa and sb else None

        rates_a = {task: c / n for task, (n, c) in tasks_a.items()}
        rates_b = {task: c / n for task, (n, c) in tasks_b.items()}
        common = sorted(set(rates_a) & set(rates_b), key=task_order)
        domains[domain] = {
            "k": k,
            "avg_reward": _side(sa["avg_reward"] if sa else None, sb["avg_reward"] if sb else None),
            "pass_hat_1": _side(_pass_hat(tasks_a, 1), _pass_hat(tasks_b, 1)),
            "pass_hat_k": _side(_pass_hat(tasks_a, k), _pass_hat(tasks_b, k)),
            "tasks": {
                task: _side(rates_a.get(task), rates_b.get(task))
                for task in sorted(set(rates_a) | set(rates_b), key=task_order)
            },
        }
        flipped[domain] = {
            "fixed": [
                t for t in common if rates_a[t] < PASS_THRESHOLD and rates_b[t] >= PASS_THRESHOLD
            ],
            "broken": [
                t for t in common if rates_a[t] >= PASS_THRESHOLD and rates_b[t] < PASS_THRESHOLD
            ],
            "only_in_a": sorted(set(rates_a) - set(rates_b), key=task_order),
            "only_in_b": sorted(set(rates_b) - set(rates_a), key=task_order),
        }
    from tau_adapters.evaluation.user_report import compare_fingerprints

    return {
        "labels": {"a": label_a, "b": label_b},
        "provenance": {"a": provenance(checked_a), "b": provenance(checked_b)},
        "mismatch": mismatch,
        "pass_threshold": PASS_THRESHOLD,
        "domains": domains,
        "flipped": flipped,
        "user_fingerprint": compare_fingerprints(checked_a, checked_b),
    }


# --------------------------------------------------------------------------- files


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Write ``report.json`` and ``pass_hat_k.png`` next to a run's ``trajectories.jsonl``."""
    from tau_adapters.evaluation.run_folder import TRAJECTORIES_FILE, read_rows

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    source = run_dir / TRAJECTORIES_FILE
    if not source.is_file():
        raise ConfigError(
            f"{run_dir}: no {TRAJECTORIES_FILE}; pass a directory written by "
            "`tau-adapters eval --output DIR`"
        )
    rows = read_rows(source)
    if not rows:
        raise ConfigError(f"{source}: no trajectories in the file")
    report = build_report(rows)
    report["partial"] = run_state(run_dir, len(rows))
    try:
        (run_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {run_dir / REPORT_FILE}: {exc.strerror or exc}") from None
    plot_pass_hat_k(report, run_dir / PLOT_FILE, run=str(run_dir))
    return report


def run_state(run_dir: Path, rows: int) -> dict[str, Any] | None:
    """Whether a run stopped early: None for a finished run, else what is known about it.

    ``eval`` writes ``partial`` and ``planned_episodes`` into ``summary.json`` (also when it is
    interrupted); a run killed before writing any summary is reported as possibly partial.
    """
    from tau_adapters.evaluation.run_folder import SUMMARY_FILE

    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"episodes": rows, "planned_episodes": None, "reason": f"no readable {SUMMARY_FILE}"}
    if not isinstance(summary, Mapping) or not summary.get("partial"):
        return None
    return {
        "episodes": rows,
        "planned_episodes": summary.get("planned_episodes"),
        "reason": "the run was interrupted",
    }


def partial_note(state: Mapping[str, Any] | None) -> str | None:
    """One line saying that a report covers an unfinished run, or None."""
    if not state:
        return None
    planned = state.get("planned_episodes")
    of = f" of {planned} planned" if planned else ""
    return (
        f"PARTIAL RUN ({state.get('reason')}): {state.get('episodes')}{of} episodes; "
        "numbers cover only the episodes written (eval --resume finishes it)"
    )


# --------------------------------------------------------------------------- printing


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fmt_ci(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    ci = entry.get("ci")
    text = f"{entry['value']:.3f}"
    return text if not ci else f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _counter(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def _default_console(console: Console | None) -> Console:
    if console is not None:
        return console
    from rich.console import Console

    return Console()


def _report_blocks(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    blocks = list(report.get("domains", {}).items())
    if len(blocks) > 1 and report.get("overall"):
        blocks.append(("overall", report["overall"]))
    return blocks


def print_report(report: Mapping[str, Any], console: Console | None = None) -> None:
    """Two tables: pass^k with CIs per domain, then where the failures came from."""
    from rich.table import Table
    from rich.text import Text

    from tau_adapters.evaluation.user_report import user_header_lines

    console = _default_console(console)
    info = report.get("provenance")
    if info:
        for line in header_lines(info):
            console.print(Text(line), soft_wrap=True)
        if not info["official"]:
            console.print(Text("NOT THE OFFICIAL SCORE: see grading above", style="bold red"))
    for line in user_header_lines(report.get("user") or {}):
        console.print(
            Text(line, style="bold red" if line.startswith("WARNING") else ""), soft_wrap=True
        )
    blocks = _report_blocks(report)
    max_k = max((block["trials"] for _, block in blocks), default=0)
    confidence = report.get("bootstrap", {}).get("confidence")
    title = "pass^k" + (f" ({confidence:.0%} bootstrap CI over tasks)" if confidence else "")
    table = Table(title=title)
    for column in ("domain", "tasks", "trials", "episodes", "failed", "avg reward"):
        table.add_column(column, justify="left" if column == "domain" else "right", no_wrap=True)
    for k in range(1, max_k + 1):
        table.add_column(f"pass^{k}", justify="right", no_wrap=True)
    if max_k:
        table.add_column(f"pass@{max_k}", justify="right", no_wrap=True)
    for name, block in blocks:
        cells: list[Any] = [
            Text(str(name)),
            str(block["tasks"]),
            str(block["trials"]),
            str(block["episodes"]),
            str(block.get("failed", 0)),
            _fmt(block["avg_reward"]),
        ]
        cells += [_fmt_ci(block["pass_hat_k"].get(str(k))) for k in range(1, max_k + 1)]
        if max_k:
            cells.append(_fmt_ci(block["pass_at_k"].get(str(max_k))))
        table.add_row(*cells)
    console.print(table)
    note = partial_note(report.get("partial"))
    if note:
        console.print(Text(note, style="bold red"))
    if any(block.get("failed") for _, block in blocks):
        console.print(Text("failed episodes (infrastructure) are left out of every score above"))

    failures = Table(title="failures")
    columns = (
        "domain",
        "status",
        "terminations",
        "tool errors (eps)",
        "parse errors (eps)",
        "user-sim errors",
        "failed",
        "avg agent turns",
        "avg resp tokens",
        "avg s",
        "user cost / tokens",
    )
    for column in columns:
        failures.add_column(column, justify="left" if column in columns[:3] else "right")
    for name, block in blocks:
        f = block["failures"]
        user = (
            "-"
            if f["total_user_tokens"] is None and f["avg_user_cost"] is None
            else f"{_fmt(f['avg_user_cost'], 4)} / {f['total_user_tokens'] or 0}"
        )
        failures.add_row(
            Text(str(name)),
            Text(_counter(f["statuses"])),
            Text(_counter(f["terminations"])),
            f"{f['tool_errors']['total']} ({f['tool_errors']['episodes_with_any']})",
            f"{f['parse_errors']['total']} ({f['parse_errors']['episodes_with_any']})",
            str(f["user_simulator_errors"]),
            str(f["failed_episodes"]["count"]),
            _fmt(f["avg_agent_turns"], 1),
            _fmt(f["avg_response_tokens"], 0),
            _fmt(f["avg_duration_s"], 1),
            user,
        )
    console.print(failures)
    for name, share in (report.get("user") or {}).get("user_side", {}).items():
        if share["user_side"]:
            kinds = ", ".join(f"{k} {n}" for k, n in share["kinds"].items() if n)
            console.print(
                Text(
                    f"{name}: {share['user_side']} of {share['episodes']} episodes "
                    f"({share['share']:.0%}) ended by the user without success ({kinds})"
                )
            )
    for name, block in report.get("domains", {}).items():
        top = block["failures"]["failed_episodes"]["top_errors"]
        if top:
            console.print(Text(f"{name}: most common errors of failed episodes"))
        for entry in top:
            console.print(Text(f"  {entry['count']}x {entry['error']}"), soft_wrap=True)


#: Task ids printed per list; the full lists are in comparison.json.
MAX_IDS_SHOWN = 12


def print_comparison(comparison: Mapping[str, Any], console: Console | None = None) -> None:
    """Side-by-side metrics with B - A deltas, then the tasks that flipped per domain."""
    from rich.table import Table
    from rich.text import Text

    console = _default_console(console)
    # Columns say A and B: run names (often paths such as step100/eval) would squeeze the table.
    label_a, label_b = comparison["labels"]["a"], comparison["labels"]["b"]
    console.print(Text(f"A = {label_a}\nB = {label_b}"), soft_wrap=True)
    for side, label in (("a", "A"), ("b", "B")):
        info = comparison.get("provenance", {}).get(side)
        if info:
            console.print(Text(f"{label}: " + " | ".join(header_lines(info))), soft_wrap=True)
    for problem in comparison.get("mismatch") or []:
        console.print(Text(f"NOT COMPARABLE ({problem}); compared anyway", style="bold red"))
    a, b = "A", "B"
    table = Table(title="A -> B (delta = B - A)")

    def delta(value: float | None) -> str:
        return "-" if value is None else f"{value:+.3f}"

    # pass^k adds nothing where k is 1 everywhere (it is pass^1); a column with no value is noise.
    metrics = [("avg reward", "avg_reward"), ("pass^1", "pass_hat_1")]
    if any((stats["k"] or 0) > 1 for stats in comparison["domains"].values()):
        metrics.append(("pass^k", "pass_hat_k"))
    headers = ["domain", "k"] + [f"{m} {side}" for m, _ in metrics for side in (a, b, "delta")]
    rows = []
    for domain, stats in comparison["domains"].items():
        cells = [str(domain), "-" if stats["k"] is None else str(stats["k"])]
        for _, key in metrics:
            side = stats[key]
            cells += [_fmt(side["a"]), _fmt(side["b"]), delta(side["delta"])]
        rows.append(cells)
    keep = [i for i in range(len(headers)) if i == 0 or any(row[i] != "-" for row in rows)]
    for i in keep:
        table.add_column(Text(headers[i]), justify="left" if i == 0 else "right", no_wrap=True)
    for cells in rows:
        table.add_row(*[Text(cells[i]) if i == 0 else cells[i] for i in keep])
    console.print(table)
    from tau_adapters.evaluation.user_report import difference_lines

    names = {"fixed": "fixed", "broken": "broken", "only_in_a": f"only in {a}"}
    names["only_in_b"] = f"only in {b}"
    users = comparison.get("user_fingerprint") or {}
    for domain, lists in comparison["flipped"].items():
        for line in difference_lines(domain, users.get(domain)):
            console.print(Text(line, style="bold red"))
        for key, label in names.items():
            if lists[key]:
                shown = lists[key][:MAX_IDS_SHOWN]
                more = len(lists[key]) - len(shown)
                tail = f", ... and {more} more (all in comparison.json)" if more else ""
                console.print(
                    Text(f"{domain} {label} ({len(lists[key])}): {', '.join(shown)}{tail}"),
                    soft_wrap=True,
                )
        in_both = comparison["domains"][domain]["k"] is not None
        if in_both and not lists["fixed"] and not lists["broken"]:
            console.print(Text(f"{domain}: no task flipped"))
