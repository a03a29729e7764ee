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
from typing import Any

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


def check_output_file(path: Path, what: str) -> None:
    """An output file can be written: its folder exists or can be made, and it is not a folder."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; pass a file path")
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
    make_folder(folder, "--output")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".tau-adapters-probe-")]
    if resume:
        source = folder / TRAJECTORIES_FILE
        if not source.is_file():
            raise ConfigError(f"--resume: {folder} has no {TRAJECTORIES_FILE} to continue")
        return completed_rows(read_rows(source))
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
        if row.get("status") == "failed":
            continue
        kept.setdefault(row_key(row), row)
    return list(kept.values())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a trajectories file; raises `ConfigError` naming the first bad line."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object per line")
        rows.append(row)
    return rows
