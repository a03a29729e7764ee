"""The AReaL recipe's config class and dataset rows, in an importable module.

AReaL's single-controller mode (``scheduler.type: local``, how AReaL's own examples run) sends the
whole experiment config to every worker it starts (``/configure``), a dataclass named by its
import path (``module.QualName``); the worker imports that path to rebuild it. A class defined in
the script that runs as ``__main__`` cannot be imported there (the worker's ``__main__`` is
AReaL's RPC server), so the worker would get a plain dict and fail on ``config.seed``. Everything
a worker deserialises must live in an importable module like this one; `train_tau2` only runs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from areal.api.cli_args import GRPOConfig

__all__ = ["Tau2GRPOConfig", "task_rows"]


@dataclass
class Tau2GRPOConfig(GRPOConfig):
    """AReaL's GRPO config plus ``econfig``: the tau2 episode (see `config_from_econfig`)."""

    econfig: dict[str, Any] = field(default_factory=dict)


def task_rows(path: str, at_least: int = 1) -> list[dict[str, Any]]:
    """The rows of an exported task file, repeated until there are `at_least` of them (so one
    batch can be filled from a small split)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no task rows (write it with `tau-adapters tasks export`)")
    while len(rows) < at_least:
        rows += rows[: at_least - len(rows)]
    return rows
