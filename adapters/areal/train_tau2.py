"""Qwen3 GRPO on tau2 with AReaL, engine mode (token-exact): the recipe's entry point.

    python -m tau_adapters.areal.train_tau2 --config config_qwen3_tau2.yaml \\
        experiment_name=tau2 trial_name=run1 econfig.user_api_base=http://HOST:8000/v1

The datasets are task references written by ``tau-adapters tasks export --format areal``; each
row becomes one ``Tau2Workflow.arun_episode`` (``econfig.group_size`` episodes when set). See
README.md here for the whole path from zero to a running job.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from areal.api.cli_args import GRPOConfig


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


def main(argv: list[str]) -> None:
    from datasets import Dataset
    from tau_adapters.areal import Tau2Workflow

    from areal import PPOTrainer
    from areal.api.cli_args import load_expr_config

    config, _ = load_expr_config(argv, Tau2GRPOConfig)
    train = Dataset.from_list(task_rows(config.train_dataset.path, config.train_dataset.batch_size))
    valid = Dataset.from_list(task_rows(config.valid_dataset.path))
    kwargs = {
        "econfig": config.econfig,
        "gconfig": config.gconfig,
        "tokenizer": config.tokenizer_path,
    }
    Tau2Workflow(**kwargs)  # a bad econfig or tokenizer fails here, before any GPU work
    evaluation = {**kwargs, "gconfig": config.gconfig.new(temperature=0.6)}
    with PPOTrainer(config, train_dataset=train, valid_dataset=valid) as trainer:
        trainer.train(
            workflow="tau_adapters.areal.Tau2Workflow",
            workflow_kwargs=kwargs,
            eval_workflow="tau_adapters.areal.Tau2Workflow",
            eval_workflow_kwargs=evaluation,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
