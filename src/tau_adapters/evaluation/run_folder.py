"""Where results go: run folders that are never overwritten by accident, and output files that
fail at start-up (exit 2) rather than with a traceback after the work is done.

A run folder holds ``trajectories.jsonl``, ``summary.json``, ``report.json`` and the plot. An
existing non-empty folder is refused unless the user says what to do with it: ``--overwrite``
(start again) or ``--resume`` (keep the finished episodes, run the rest).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from tau_adapters.core import Status
from tau_adapters.errors import ConfigError

TRAJECTORIES_FILE = "trajectories.jsonl"
SUMMARY_FILE = "summary.json"
#: Files a run writes; `--overwrite` removes these and nothing else.
RUN_FILES = (TRAJECTORIES_FILE, SUMMARY_FILE, "report.json", "pass_hat_k.png")


def default_run_folder(root: Path = Path("runs")) -> Path:
    """``runs/eval-YYYYmmdd-HHMMSS`` (UTC): a fresh folder per run, so nothing is overwritten."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return root / f"eval-{stamp}"


def _probe_writable(folder: Path, what: str) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tau-adapters-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{what} {folder} is not writable ({exc.strerror or exc}); choose another folder"
        ) from None


def make_folder(folder: Path, what: str) -> None:
    """Create `folder` (and parents) or fail with a message naming the option and the reason."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {folder} is a file, not a folder; pass a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {what} {folder}: {exc.strerror or exc}; choose another folder"
        ) from None
    _probe_writable(folder, what)


def check_output_file(
    path: Path, what: str, *, overwrite: bool = False, inputs: Sequence[Path] = ()
) -> None:
    """An output file can be written: its folder exists or can be made, it is not a folder, it
    is none of the command's `inputs`, and it does not exist unless `overwrite`."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; pass a file path")
    for source in inputs:
        if path.resolve() == Path(source).resolve():
            raise ConfigError(
                f"{what} {path} is the input file; write to another path (the input would be "
                "replaced by the output and its transcripts lost)"
            )
    if path.exists() and not overwrite:
        raise ConfigError(f"{what} {path} exists; pass --overwrite to replace it, or another path")
    make_folder(path.parent if str(path.parent) else Path("."), f"folder of {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path} is not writable; choose another path")


def prepare_run_folder(
    folder: Path, *, overwrite: bool = False, resume: bool = False
) -> list[dict[str, Any]]:
    """Make the run folder ready; returns the finished rows to keep when resuming.

    On resume, rows that ended ``failed`` (infrastructure) are run again, and a row seen twice
    (same domain, task, trial) is kept once.
    """
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume contradict each other; pass one")
    if resume and not folder.is_dir():  # nothing to finish: never create a folder to "resume"
        raise ConfigError(f"--resume: {folder} is not a run folder (no such directory)")
    make_folder(folder, "--output")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".tau-adapters-probe-")]
    if resume:
        source = folder / TRAJECTORIES_FILE
        if not source.is_file():
            raise ConfigError(f"--resume: {folder} has no {TRAJECTORIES_FILE} to continue")
        return completed_rows(read_rows(source, duplicates="allow"))
    if entries and not overwrite:
        names = ", ".join(sorted(p.name for p in entries)[:5])
        raise ConfigError(
            f"--output {folder} is not empty ({names}); pass --overwrite to replace the run, "
            "--resume to finish an interrupted one, or another --output"
        )
    if overwrite:
        for name in RUN_FILES:
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    return []


def row_key(row: dict[str, Any]) -> tuple[str, str, int]:
    return (str(row.get("domain")), str(row.get("task_id")), int(row.get("trial") or 0))


def completed_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows a resumed run keeps: not failed, first of each (domain, task, trial)."""
    kept: dict[tuple[str, str, int], dict[str, Any]] = {}
    for row in rows:
        if row.get("status") == Status.FAILED:
            continue
        kept.setdefault(row_key(row), row)
    return list(kept.values())


def read_rows(
    path: Path, *, duplicates: Literal["refuse", "allow"] = "refuse"
) -> list[dict[str, Any]]:
    """Rows of a trajectories file; raises `ConfigError` naming the file and the first bad line.

    The one reader of trajectories for every command, so that every command applies the same
    rules: UTF-8 JSON objects, a numeric ``reward`` and an integer ``trial`` where present, and
    each (domain, task_id, trial) once: a duplicate would count one episode as an extra trial.
    ``duplicates="allow"`` is for resuming a run, which keeps the first of each.
    """
    rows = []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    first: dict[tuple[str, str, int], int] = {}
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}:{number}: not UTF-8 text (byte {exc.start + 1}: {raw[exc.start : exc.start + 1]!r}); "
                "a trajectories file is UTF-8 JSON lines"
            ) from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object per line")
        reward = row.get("reward")
        if reward is not None and (
            isinstance(reward, bool) or not isinstance(reward, int | float) or reward != reward
        ):
            raise ConfigError(f"{path}:{number}: reward {reward!r} is not a number")
        trial = row.get("trial")
        if trial is not None and (isinstance(trial, bool) or not isinstance(trial, int)):
            raise ConfigError(f"{path}:{number}: trial {trial!r} is not an integer")
        key = row_key(row)
        if key in first and duplicates == "refuse":
            raise ConfigError(
                f"{path}: lines {first[key]} and {number} are the same episode (domain "
                f"{key[0]!r}, task {key[1]!r}, trial {key[2]}); remove the duplicate, or it "
                "would count as an extra trial"
            )
        first.setdefault(key, number)
        rows.append(row)
    return rows


#: Settings that may change when a run is resumed: they do not change any episode's result.
RESUME_MAY_CHANGE = ("concurrency", "executor")


def check_resume_settings(folder: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume `folder` with settings other than the ones its run recorded.

    Finished episodes are kept as they are; running the rest with other settings would give a
    summary no single setting produced. ``summary.json`` records the settings from the start of
    a run (also when it is interrupted); a run without one cannot be checked and is refused.
    """
    path = folder / SUMMARY_FILE
    if not folder.is_dir():
        raise ConfigError(f"--resume: {folder} is not a run folder (no such directory)")
    if not path.is_file():
        raise ConfigError(
            f"--resume: {folder} has no {SUMMARY_FILE}, so its settings are unknown; start a new "
            "run (another --output, or --overwrite)"
        )
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("config") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise ConfigError(f"--resume: {path} is not a summary written by eval") from None
    differ = [
        f"{key}: run {recorded[key]!r}, now {value!r}"
        for key, value in settings.items()
        if key in recorded
        and key not in RESUME_MAY_CHANGE
        and _normal(recorded[key]) != _normal(value)
    ]
    if differ:
        raise ConfigError(
            f"--resume: settings differ from the run in {folder}:\n  "
            + "\n  ".join(differ)
            + "\nresume with the run's settings, or start a new run (another --output)"
        )


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_jsonl_atomic(path: Path, rows: Sequence[dict[str, Any]]) -> int:
    """Rows as JSON lines, replacing `path` in one rename; `ConfigError` if it cannot be written."""
    from tau_adapters.runtime.files import write_jsonl_atomic as write

    try:
        return write(path, rows)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
