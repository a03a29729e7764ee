"""Every name a user types into a host resolves the way that host resolves it.

- slime: ``--custom-generate-function-path`` and friends go through slime's ``load_function``
  (slime/utils/misc.py at 624b824a: ``rpartition(".")``, ``import_module``, ``getattr``);
- AReaL: workflow strings go through ``areal.utils.dynamic_import.import_from_string``
  (AReaL 1.0.4), run in the AReaL leg where AReaL is installed;
- SkyRL: ``tau_adapters.skyrl.register()`` then skyrl-gym's own ``make``.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
from typing import Any

import pytest

import tau_adapters

SLIME_PATHS = [
    "tau_adapters.slime.generate",
    "tau_adapters.slime.reward_post_process",
    "tau_adapters.slime.dynamic_filter",
    "tau_adapters.slime.sft_tokens.generate_rollout",
]

PUBLIC_NAMES = [
    "EpisodeConfig", "ConfigError", "Session", "StepResult", "EpisodeContext", "Trajectory",
    "rollout", "TaskRef", "get_domain", "OraclePolicy", "ScriptedUser", "make_policy",
    "make_user", "hookimpl", "Policy", "User", "Status",
]  # fmt: skip


def slime_load_function(path: str) -> Any:
    """What slime's ``load_function`` does with a path (written from its behaviour)."""
    module_path, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_path), attr)


@pytest.mark.parametrize("path", SLIME_PATHS)
def test_slime_paths_resolve(path: str) -> None:
    value = slime_load_function(path)
    assert callable(value)
    if path.endswith(".generate"):
        assert asyncio.iscoroutinefunction(value)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_names_resolve_from_the_package(name: str) -> None:
    assert getattr(tau_adapters, name) is not None
    assert name in dir(tau_adapters)


def test_areal_workflow_strings_resolve_through_areal() -> None:
    dynamic = pytest.importorskip(
        "areal.utils.dynamic_import",
        reason="AReaL is not installed here (the AReaL leg, .ci/legs/50-areal.sh, runs this)",
    )
    workflow = dynamic.import_from_string("tau_adapters.areal.Tau2Workflow")
    agent_cls = dynamic.import_from_string("tau_adapters.areal.Tau2Agent")
    assert isinstance(workflow, type) and isinstance(agent_cls, type)
    # Subprocess mode pickles the agent: it must survive a round trip.
    agent = agent_cls()
    assert type(pickle.loads(pickle.dumps(agent))) is agent_cls


def test_skyrl_register_then_make() -> None:
    registration = pytest.importorskip(
        "skyrl_gym.envs.registration",
        reason="skyrl-gym is not installed (pip install -e '.[skyrl]')",
    )
    from tau_adapters.skyrl import register

    register()
    register()  # idempotent: SkyRL's own register raises on a duplicate id
    env = registration.make(
        "tau2",
        env_config={},
        extras={"domain": "mock", "split": "train", "task_id": "create_task_1"},
    )
    assert type(env).__name__ == "Tau2Env"


def test_cli_entry_point_resolves() -> None:
    from importlib.metadata import entry_points

    scripts = {e.name: e for e in entry_points(group="console_scripts")}
    assert "tau-adapters" in scripts, "install the checkout (pip install -e .)"
    assert callable(scripts["tau-adapters"].load())
