"""Qwen3 GRPO on tau2 with AReaL, engine mode (token-exact): the recipe's entry point.

    python -m tau_adapters.areal.train_tau2 --config config_qwen3_tau2.yaml \\
        experiment_name=tau2 trial_name=run1 econfig.user_api_base=http://HOST:8000/v1

The datasets are task references written by ``tau-adapters tasks export --format areal``; each
row becomes one ``Tau2Workflow.arun_episode`` (``econfig.group_size`` episodes when set). See
README.md here for the whole path from zero to a running job.
"""

from __future__ import annotations

import sys

from tau_adapters.areal.config import Tau2GRPOConfig, task_rows

__all__ = ["Tau2GRPOConfig", "main", "task_rows"]


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
    # AReaL groups eval rows by eval_gconfig.n_samples: the eval workflow numbers its members by
    # the same count (`Tau2Workflow` reads n_samples from the gconfig it is given).
    eval_gconfig = config.eval_gconfig or config.gconfig
    evaluation = {**kwargs, "gconfig": eval_gconfig.new(temperature=0.6)}
    with PPOTrainer(config, train_dataset=train, valid_dataset=valid) as trainer:
        trainer.train(
            workflow="tau_adapters.areal.Tau2Workflow",
            workflow_kwargs=kwargs,
            eval_workflow="tau_adapters.areal.Tau2Workflow",
            eval_workflow_kwargs=evaluation,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
