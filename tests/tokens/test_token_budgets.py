"""Token budgets at every boundary: a sweep of limits over one teacher-forced episode.

For each limit the episode (the oracle's turns forced through a real HTTP engine on loopback) must
end without the transcript ever passing the limit, and an observation that would pass it is not
appended: the last span of a truncated transcript is never an observation. The limits sweep every
token offset around the episode's turn boundaries, so each way of running out (inside a model turn,
exactly at its end, inside the next observation) is hit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import requires_tau2

pytest.importorskip("torch", reason="token-level tests need the testing extra (torch)")

from tau_adapters.agents.token_policy import template_for
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.testing import LoopbackEngine

from token_helpers import ForcedOracle

pytestmark = requires_tau2


@pytest.fixture(scope="module")
def engine():
    config = EpisodeConfig.build(tokenizer="local:chatml")
    server = LoopbackEngine(template_for(config).tokenizer, seed=1).start()
    yield server
    server.stop()


def _config(**changes: Any) -> EpisodeConfig:
    base = {
        "domain": "mock",  # tau2's mock domain: a short policy, so a short prompt
        "policy": "sglang:loopback",
        "tokenizer": "local:chatml",
        "request_attempts": 2,
        "request_timeout_s": 10.0,
    }
    return EpisodeConfig.build(**{**base, **changes})


def _task() -> Any:
    return get_domain("mock").task("create_task_1")


def _run(engine: Any, config: EpisodeConfig) -> Any:
    policy = ForcedOracle(engine.url, config)
    return asyncio.run(rollout(_task(), config, policy=policy))


@pytest.fixture(scope="module")
def full(engine: Any) -> Any:
    """The episode without limits: where its spans start and end."""
    trajectory = _run(engine, _config())
    assert trajectory.status == "completed" and trajectory.reward == 1.0
    return trajectory.transcript


def _boundaries(transcript: Any, count: int) -> list[int]:
    """Offsets (from the start of ids) around the first `count` model/observation boundaries."""
    points: set[int] = set()
    spans = [s for s in transcript.spans if s.kind in ("model", "observation")][:count]
    for span in spans:
        for edge in (span.start, span.end):
            points.update({edge - 1, edge, edge + 1})
    return sorted(points)


def _check(transcript: Any, limit_of: Any, limit: int, trajectory: Any) -> None:
    assert limit_of(transcript) <= limit, (
        limit,
        [(s.kind, s.start, s.end) for s in transcript.spans],
    )
    response = len(transcript.ids) - transcript.prompt_len
    assert len(transcript.loss_mask) == response == len(transcript.logprobs)
    if trajectory.status == "truncated":
        assert transcript.spans[-1].kind != "observation", limit
    else:
        assert trajectory.status == "completed", (limit, trajectory.error)


def test_response_budget_is_never_passed(engine: Any, full: Any) -> None:
    offsets = [p - full.prompt_len for p in _boundaries(full, 4) if p > full.prompt_len]
    full_length = len(full.ids) - full.prompt_len
    for limit in offsets:
        trajectory = _run(engine, _config(max_response_tokens=limit))
        transcript = trajectory.transcript

        def response_length(t: Any) -> int:
            return len(t.ids) - t.prompt_len

        _check(transcript, response_length, limit, trajectory)
        if limit < full_length:
            assert trajectory.status == "truncated", limit


def test_context_limit_is_never_passed(engine: Any, full: Any) -> None:
    limits = [p for p in _boundaries(full, 4) if p > full.prompt_len]
    for limit in limits:
        trajectory = _run(engine, _config(max_context_tokens=limit))
        _check(trajectory.transcript, lambda t: len(t.ids), limit, trajectory)
        if limit < len(full.ids):
            assert trajectory.status == "truncated", limit
