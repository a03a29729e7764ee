"""Exceptions. Configuration errors fail at start-up; episode-time failures never raise into a host."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_matches(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    """The valid names closest to a misspelt one (the "did you mean" of every error)."""
    return difflib.get_close_matches(name, list(valid), n=n, cutoff=0.6)


class TauAdaptersError(Exception):
    """Base class of this library's errors."""


class ConfigError(TauAdaptersError, ValueError):
    """A setting is wrong or something the setting needs is missing; the message names the fix."""


class UnknownNameError(ConfigError, KeyError):
    """A name (domain, split, task id, plugin) that is not registered; lists the valid ones."""

    #: The list of valid values is cut at about this many characters (telecom has 2,285 task
    #: ids of ~100 characters each); close matches are always shown.
    MAX_SHOWN_CHARS = 400

    def __init__(self, kind: str, name: object, valid: list[str] | tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.valid = list(valid)
        near = close_matches(str(name), self.valid)
        shown: list[str] = []
        for value in self.valid:
            if shown and sum(len(v) + 2 for v in shown) + len(value) > self.MAX_SHOWN_CHARS:
                break
            shown.append(value)
        listed = ", ".join(shown)
        if len(shown) < len(self.valid):
            listed += f", ... ({len(self.valid)} in all)"
        hint = f"; did you mean {', '.join(repr(v) for v in near)}?" if near else ""
        super().__init__(f"unknown {kind} {name!r}{hint}; valid values: {listed}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class EpisodeSignal(TauAdaptersError):
    """Raised by a policy to end an episode early; the rollout turns it into a status."""

    status = "failed"
    termination_reason = "agent_error"

    def __init__(self, *args: object, turn_taken: bool = False) -> None:
        super().__init__(*args)
        #: The model produced (part of) a turn before the signal: it counts as an agent turn.
        self.turn_taken = turn_taken


class EpisodeTruncated(EpisodeSignal):
    """A token budget (response tokens, context length) ran out, or the engine hit its length.

    Its own termination reason, ``token_budget``: tau2 has none for it, so tau2's scoring sees
    ``max_steps`` (see `session.TAU2_TERMINATION_REASON`) and ``reward_info`` says so.
    """

    status = "truncated"
    termination_reason = "token_budget"


class EpisodeAborted(EpisodeSignal):
    """The engine answered ``abort`` (weights update, host abort) or the episode was cancelled."""

    status = "aborted"


class EpisodeSuspended(EpisodeAborted):
    """The host interrupted the episode where it can be resumed (issue 23): the engine aborted a
    generation (its tokens are kept by the policy) or the host asked at a turn boundary. The
    rollout returns an ``aborted`` trajectory carrying a snapshot instead of ending the episode."""

    def __init__(self, *args: object, where: str = "policy") -> None:
        super().__init__(*args)
        #: ``policy`` (mid-generation) or ``boundary`` (between turns).
        self.where = where


class EpisodeDoneError(TauAdaptersError, RuntimeError):
    """`step()` was called after the episode ended (a driver bug, not a model error)."""


class EndpointError(TauAdaptersError):
    """A request failed for good (after retries, or with a non-retryable status)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class HostStopped(EpisodeTruncated):
    """The host stopped sending turns before the episode ended (its length limit, or it ended
    the episode from its side). Its own termination reason, ``host_stopped``, scored by tau2 as
    ``max_steps``."""

    termination_reason = "host_stopped"


class HostTurnLimit(HostStopped):
    """The host's own turn limit ended the episode (SkyRL's ``generator.max_turns``): a turn
    limit, not a token budget, so it has its own termination reason, ``max_turns`` (scored by
    tau2 as ``max_steps``, its own step limit)."""

    termination_reason = "max_turns"


class TemplateError(ConfigError):
    """The chat template cannot be used for exact token-in/token-out episodes."""


def install_hint(extras: str) -> str:
    """How to install an extra: tau-adapters is not on a package index, so never
    ``pip install "tau-adapters[...]"`` (a package of that name there would not be this one)."""
    return (
        f'pip install -e ".[{extras}]" in your tau-adapters checkout, or pip install '
        f'"tau-adapters[{extras}] @ git+<repo-url>" (it is not on a package index)'
    )
