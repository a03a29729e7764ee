"""Partial rollouts (issue 23): what a host keeps of a suspended episode and how it comes back.

slime's ``--partial-rollout`` (read at THUDM/slime 624b824a898ab0ec1fcb4d373004c7f3852bf515,
``slime/rollout/sglang_rollout.py``): once a rollout step has enough groups, ``abort()`` sets
``GenerateState.aborted``, aborts every SGLang request, waits for the pending groups and puts
those with a non-empty response back in the data buffer; the next step hands each such sample,
the same object with status ABORTED, to the custom generate function again (``generate_and_rm``),
after zeroing its loss mask when ``--mask-offpolicy-in-partial-rollout`` is set. Only SGLang
requests are aborted: tool and user calls run on, and a ``/generate`` sent after the abort is
served, so an episode must also stop by itself at the next turn boundary (the flag).

The sample carries the episode's snapshot in ``metadata["tau_snapshot"]`` (JSON, so it survives
Ray and ``Sample.to_dict``) next to its tokens so far: ``tokens`` = the transcript plus the
tokens of a model turn cut by the abort (mask 1, their logprobs), so slime's own bookkeeping
(``response_length``, the budget it reports) sees both parts.
"""

from __future__ import annotations

from typing import Any

#: Metadata keys: the snapshot, and a small summary of where the episode stopped.
SNAPSHOT_KEY = "tau_snapshot"
SUSPENDED_KEY = "tau_suspended"


def suspended_tokens(trajectory: Any) -> tuple[list[int], list[int], list[float], int]:
    """ids, loss mask and logprobs (response part) of a suspended episode, the cut turn included;
    and the prompt length."""
    snapshot = trajectory.snapshot
    transcript = trajectory.transcript
    partial = (snapshot.get("policy") or {}).get("partial") or {"ids": [], "logprobs": []}
    ids = (transcript.ids.tolist() if transcript is not None else []) + list(partial["ids"])
    prompt_len = transcript.prompt_len if transcript is not None else 0
    off = int(partial.get("off_policy", 0))
    mask = (transcript.loss_mask.tolist() if transcript is not None else []) + [
        0 if i < off else 1 for i in range(len(partial["ids"]))
    ]
    logprobs = (transcript.logprobs.tolist() if transcript is not None else []) + [
        float(x) for x in partial["logprobs"]
    ]
    return ids, mask, logprobs, prompt_len


def suspended_summary(trajectory: Any) -> dict[str, Any]:
    snapshot = trajectory.snapshot
    partial = (snapshot.get("policy") or {}).get("partial") or {"ids": []}
    return {
        **snapshot["suspended"],
        "turns": snapshot["session"]["counters"]["agent_turns"],
        "partial_tokens": len(partial["ids"]),
        "resumed": int(snapshot["progress"].get("suspensions", 1)),
    }


def snapshot_to_resume(
    status_name: str, metadata: Any, loss_mask: Any, response_length: int, *, mask_off: bool
) -> dict[str, Any] | None:
    """The snapshot a host handed back with an aborted sample, or None (start afresh).

    ``mask_off``: the host masks tokens from before the abort as off-policy (slime's
    ``--mask-offpolicy-in-partial-rollout`` zeroes the sample's loss mask before calling us);
    the restored record then keeps those tokens and their logprobs with mask 0.
    """
    if status_name != "ABORTED" or not isinstance(metadata, dict):
        return None
    snapshot = metadata.get(SNAPSHOT_KEY)
    if not isinstance(snapshot, dict):
        return None
    zeroed = response_length > 0 and loss_mask is not None and not any(loss_mask)
    if mask_off and zeroed:
        mask_off_policy(snapshot)
    return snapshot


def mask_off_policy(snapshot: dict[str, Any]) -> None:
    """Zero the loss mask of every token sampled before the suspension (logprobs kept)."""
    policy = snapshot.get("policy") or {}
    transcript = policy.get("transcript")
    if transcript is not None:
        transcript["loss_mask"] = [0] * len(transcript["loss_mask"])
    partial = policy.get("partial")
    if partial is not None:
        partial["off_policy"] = len(partial["ids"])


def write_suspended_slime(sample: Any, trajectory: Any, template: Any, aborted: Any) -> Any:
    """A suspended episode into a slime ``Sample`` (status ABORTED, no reward): its tokens so far
    and, in metadata, the snapshot the next step resumes from."""
    ids, mask, logprobs, prompt_len = suspended_tokens(trajectory)
    sample.tokens, sample.loss_mask, sample.rollout_log_probs = ids, mask, logprobs
    sample.response_length = len(ids) - prompt_len
    sample.response = template.decode(ids[prompt_len:])
    sample.status, sample.reward = aborted, None
    metadata = dict(sample.metadata) if isinstance(sample.metadata, dict) else {}
    metadata[SNAPSHOT_KEY] = trajectory.snapshot
    metadata[SUSPENDED_KEY] = suspended_summary(trajectory)
    sample.metadata = metadata
    return sample
