"""slime SFT warm-up on exactly the tokens RL will see: ``--rollout-function-path
tau_adapters.slime.sft_tokens.generate_rollout``.

slime's own SFT rollout (``slime.rollout.sft_rollout.generate_rollout``) re-renders chat messages
with the chat template and derives the loss mask from template heuristics; that suits the ``sft``
export. The ``sft-tokens`` export (`tau_adapters.evaluation.warmup`) already holds the kept token ids and a loss
mask that is 1 exactly on the tokens the policy sampled, so this rollout only hands them to the
trainer. slime's dataset loader reads the rows unchanged with::

    --prompt-data tokens.jsonl --input-key input_ids --label-key loss_mask --metadata-key metadata

(the prompt is the id list, the label the full-length mask). Rows are checked, not trusted: a length
mismatch or a row with nothing to train on raises with the row's task reference, before any of the
batch reaches training.
"""

from __future__ import annotations

from typing import Any


def sample_from_tokens(sample: Any) -> Any:
    """Fill a slime `Sample` whose ``prompt`` holds ids and ``label`` the full-length loss mask."""
    ids = sample.prompt
    mask = sample.label
    where = (sample.metadata or {}).get("task_id", "?")
    if not isinstance(ids, list) or not all(isinstance(token, int) for token in ids):
        raise ValueError(
            f"sft-tokens row (task {where}): the prompt must be the token id list; "
            "pass --input-key input_ids"
        )
    if not isinstance(mask, list) or len(mask) != len(ids):
        raise ValueError(
            f"sft-tokens row (task {where}): the label must be a loss mask as long as the ids "
            f"({len(ids)}); pass --label-key loss_mask"
        )
    if 1 not in mask:
        raise ValueError(f"sft-tokens row (task {where}): no sampled token to train on")
    response_length = len(mask) - mask.index(1)
    sample.tokens = list(ids)
    sample.response_length = response_length
    sample.loss_mask = [int(m) for m in mask[-response_length:]]
    sample.reward = 0
    return sample


def generate_rollout(args: Any, rollout_id: int, data_buffer: Any, evaluation: bool = False) -> Any:
    """slime's rollout-function signature: one batch of pre-tokenized SFT samples."""
    if evaluation:
        raise ValueError("sft_tokens.generate_rollout is for training batches only")
    groups = data_buffer.get_samples(args.rollout_batch_size)
    return [[sample_from_tokens(sample) for sample in group] for group in groups]
