"""Which failed episodes the user simulator ended: the share of a score that moved with the user.

tau2 finds a large part of retail failures to be the simulated user's doing. A row says so when the
episode ended on the user's side and did not succeed:

- ``user_error``: the user simulator broke (endpoint down, empty or malformed replies);
- ``user_transfer``: the user ended the conversation with tau2's transfer token;
- ``user_stop_early``: the user stopped before the task's actions were done (tau2's action checks
  show a gold action missing; v1: ``r_actions`` below 1).

Works on row JSON only (no tau2 import), so reports can classify rows of older runs too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: tau2's ``TRANSFER`` stop token (tau2.user.user_simulator; a test checks they agree).
TRANSFER_TOKEN = "###TRANSFER###"
KINDS = ("user_error", "user_transfer", "user_stop_early")
SUCCESS = 1.0 - 1e-6


def _last_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _actions_missing(info: Any) -> bool:
    if not isinstance(info, Mapping):
        return False
    checks = info.get("action_checks")
    if isinstance(checks, list) and any(
        isinstance(check, Mapping) and check.get("action_match") is False for check in checks
    ):
        return True
    inner = info.get("info")  # tau-bench v1's RewardResult.info
    if isinstance(inner, Mapping):
        r_actions = inner.get("r_actions")
        if isinstance(r_actions, int | float) and not isinstance(r_actions, bool):
            return float(r_actions) < SUCCESS
    return False


def user_side(row: Mapping[str, Any]) -> str | None:
    """The user-side kind of a row's ending (see the module docstring), or None."""
    reason = row.get("termination_reason")
    if reason == "user_error":
        return "user_error"
    if reason != "user_stop":
        return None
    reward = row.get("reward")
    if isinstance(reward, int | float) and float(reward) >= SUCCESS:
        return None
    if TRANSFER_TOKEN in _last_user_text(row.get("messages")):
        return "user_transfer"
    if _actions_missing(row.get("reward_info")):
        return "user_stop_early"
    return None
