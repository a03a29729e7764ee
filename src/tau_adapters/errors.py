"""Exceptions. Configuration errors fail at start-up; episode-time failures never raise into a host."""

from __future__ import annotations


class TauAdaptersError(Exception):
    """Base class of this library's errors."""


class ConfigError(TauAdaptersError, ValueError):
    """A setting is wrong or something the setting needs is missing; the message names the fix."""


class UnknownNameError(ConfigError, KeyError):
    """A name (domain, split, task id, plugin) that is not registered; lists the valid ones."""

    def __init__(self, kind: str, name: object, valid: list[str] | tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.valid = list(valid)
        shown = ", ".join(self.valid[:40]) + (", ..." if len(self.valid) > 40 else "")
        super().__init__(f"unknown {kind} {name!r}; valid values: {shown}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class EpisodeSignal(TauAdaptersError):
    """Raised by a policy to end an episode early; the rollout turns it into a status."""

    status = "failed"
    termination_reason = "agent_error"


class EpisodeTruncated(EpisodeSignal):
    """A token budget (response tokens, context length) ran out, or the engine hit its length."""

    status = "truncated"
    termination_reason = "max_steps"


class EpisodeAborted(EpisodeSignal):
    """The engine answered ``abort`` (weights update, host abort) or the episode was cancelled."""

    status = "aborted"
