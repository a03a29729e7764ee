"""Episodes that survive an abort (issue 23): a JSON snapshot of an unfinished episode.

Hosts cut episodes short: slime aborts every request once a rollout step has enough samples
(``--partial-rollout`` hands the unfinished ones back in the next step), AReaL interrupts
generation for a weight update. A snapshot holds what continuing needs, as plain JSON (it rides
in a slime sample's metadata, through Ray, into another process):

- ``session``: the tau2 messages so far (task history included), step/error counters, call-id
  counter, rejected turns and whose turn it is (`Session.state`);
- ``policy``: the token record (ids, loss mask, logprobs, spans, chat messages) and a model turn
  in progress (tokens that came back before an engine abort) (`TokenPolicy.suspend_state`);
- ``user``: the user simulator's conversation (LLM, tau-bench v1) or script position;
- ``observation``: what the agent is shown next when it was suspended between turns;
- ``task``/``config_digest``/``seed``: what it must be resumed with (checked, never assumed).

Resuming (`rollout(..., resume=snapshot)`) builds a fresh copy-on-write environment and runs
every recorded tool call again (results must match, else the episode ends ``failed`` naming the
call), restores the user without a model call and continues the loop. With a seeded engine the
result equals the episode run in one go: same messages, reward, token ids, mask and logprobs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Bumped when the layout changes; an older snapshot is refused with the reason.
SNAPSHOT_VERSION = 1

#: EpisodeConfig fields that shape an episode's tokens and messages: a snapshot resumes only
#: under the same values.
SHAPING_FIELDS = (
    "domain",
    "max_steps",
    "max_errors",
    "user",
    "user_model",
    "user_temperature",
    "user_max_tokens",
    "user_strategy",
    "parser",
    "on_malformed",
    "tokenizer",
    "chat_template",
    "chat_template_kwargs",
    "temperature",
    "top_p",
    "max_new_tokens",
    "max_response_tokens",
    "max_context_tokens",
)


def config_digest(config: Any) -> str:
    values = {name: getattr(config, name, None) for name in SHAPING_FIELDS}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def can_suspend(policy: Any, user: Any) -> bool:
    """Both parties can save and restore their state (else the host restarts the episode)."""
    return all(
        callable(getattr(party, "suspend_state", None))
        and callable(getattr(party, "restore", None))
        for party in (policy, user)
    )


def capture(
    session: Any,
    policy: Any,
    user: Any,
    *,
    task: Any,
    config: Any,
    trial: int,
    seed: int,
    observation: list[Any] | None,
    where: str,
    reason: str,
    progress: dict[str, Any],
) -> dict[str, Any]:
    """The snapshot of an unfinished episode (JSON-serialisable; checked by a round trip)."""
    from tau_adapters.episode.row_checks import task_fingerprint

    snapshot = {
        "version": SNAPSHOT_VERSION,
        "task": {
            "benchmark": session.domain.benchmark,
            "domain": session.domain.name,
            "task_id": str(task.id),
            "task_fingerprint": task_fingerprint(task),
        },
        "trial": trial,
        "seed": seed,
        "config_digest": config_digest(config),
        "session": session.state(),
        "observation": (
            None if observation is None else [m.model_dump(mode="json") for m in observation]
        ),
        "policy": policy.suspend_state(),
        "user": user.suspend_state(),
        "progress": progress,
        "suspended": {"where": where, "reason": reason},
    }
    return json.loads(json.dumps(snapshot))  # a plain-JSON copy: nothing shared, nothing exotic


def mismatch(snapshot: dict[str, Any], task: Any, config: Any, seed: int) -> str | None:
    """Why `snapshot` cannot resume this task under this config, or None."""
    from tau_adapters.episode.row_checks import task_fingerprint

    if not isinstance(snapshot, dict) or snapshot.get("version") != SNAPSHOT_VERSION:
        found = snapshot.get("version") if isinstance(snapshot, dict) else type(snapshot).__name__
        return f"snapshot version {found!r} is not {SNAPSHOT_VERSION}"
    recorded = snapshot["task"]
    if recorded["task_id"] != str(task.id) or recorded["task_fingerprint"] != task_fingerprint(
        task
    ):
        return f"the task changed (snapshot of {recorded['domain']}/{recorded['task_id']})"
    if snapshot["config_digest"] != config_digest(config):
        return (
            "the episode configuration changed since the snapshot (one of: "
            + ", ".join(SHAPING_FIELDS)
            + ")"
        )
    if int(snapshot["seed"]) != seed:
        return f"the seed changed ({snapshot['seed']} -> {seed})"
    return None


def observation_of(t: Any, snapshot: dict[str, Any]) -> list[Any] | None:
    from tau_adapters.episode.session import message_from_json

    data = snapshot.get("observation")
    return None if data is None else [message_from_json(t, m) for m in data]
