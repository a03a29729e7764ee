"""Things that need no tau2: import weight, config, metrics, plugins."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tau_adapters.config import ENV_ALIASES, EpisodeConfig
from tau_adapters.errors import ConfigError, UnknownNameError
from tau_adapters.evaluation.metrics import pass_at_k, pass_hat_k, summarize
from tau_adapters.plugins import hookimpl, make_user, names, plugin_manager

HEAVY = [
    "tau2",
    "litellm",
    "torch",
    "transformers",
    "slime",
    "areal",
    "skyrl_gym",
    "sglang",
    "httpx",
]


def test_import_is_light() -> None:
    code = f"import sys, tau_adapters; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_from_env_uses_recipe_names() -> None:
    config = EpisodeConfig.from_env(
        {"TAU2_MAX_STEPS": "30", "TAU2_DOMAIN": "retail", "TAU_ADAPTERS_MAX_ERRORS": "4"},
        seed=7,
    )
    assert (config.max_steps, config.domain, config.max_errors, config.seed) == (30, "retail", 4, 7)
    assert set(ENV_ALIASES.values()) <= set(EpisodeConfig.model_fields)


def test_bad_config_names_the_setting_and_its_source() -> None:
    with pytest.raises(ConfigError) as exc:
        EpisodeConfig.from_env({"TAU2_MAX_STEPS": "many"})
    assert "max_steps" in str(exc.value) and "$TAU2_MAX_STEPS" in str(exc.value)
    with pytest.raises(ConfigError, match="max_errors"):
        EpisodeConfig.build(max_errors=0)
    with pytest.raises(ConfigError, match="unknown setting 'max_step'; valid settings: domain"):
        EpisodeConfig.build(max_step=3)


def test_defaults_agree_with_tau2() -> None:
    config = pytest.importorskip("tau2.config", reason="tau2 is not installed")
    default = EpisodeConfig()
    assert default.max_steps == config.DEFAULT_MAX_STEPS
    assert default.max_errors == config.DEFAULT_MAX_ERRORS
    assert default.seed == config.DEFAULT_SEED


def test_pass_hat_k_and_pass_at_k_by_hand() -> None:
    # task A: 4 trials, 2 successes; task B: 4 trials, 4 successes.
    counts = [(4, 2), (4, 4)]
    assert pass_hat_k(counts, 1) == pytest.approx((2 / 4 + 1) / 2)
    assert pass_hat_k(counts, 2) == pytest.approx((1 / 6 + 1) / 2)
    assert pass_hat_k(counts, 3) == pytest.approx((0 + 1) / 2)
    assert pass_at_k(counts, 2) == pytest.approx((1 - 1 / 6 + 1) / 2)
    assert pass_at_k(counts, 3) == pytest.approx(1.0)
    assert pass_hat_k(counts, 5) is None


def test_summarize_counts_trials_and_terminations() -> None:
    rows = [
        {
            "domain": "d",
            "task_id": "a",
            "reward": 1.0,
            "termination_reason": "user_stop",
            "status": "completed",
        },
        {
            "domain": "d",
            "task_id": "a",
            "reward": 0.0,
            "termination_reason": "max_steps",
            "status": "truncated",
        },
        {
            "domain": "d",
            "task_id": "b",
            "reward": 0.9999999,
            "termination_reason": "user_stop",
            "status": "completed",
        },
        {
            "domain": "d",
            "task_id": "b",
            "reward": 1.0,
            "termination_reason": "user_stop",
            "status": "completed",
        },
    ]
    stats = summarize(rows)["d"]
    assert stats["tasks"] == 2 and stats["trials"] == 2
    assert stats["pass_hat_k"]["2"] == pytest.approx(0.5)
    assert stats["pass_at_k"]["2"] == pytest.approx(1.0)
    assert stats["terminations"] == {"user_stop": 3, "max_steps": 1}


class _EchoUser:
    def __init__(self, arg):
        self.arg = arg


class _Plugin:
    @hookimpl
    def register_users(self):
        return {"echo": lambda arg, config: _EchoUser(arg)}


def test_third_party_plugin_adds_a_user_by_name() -> None:
    pm = plugin_manager()
    plugin = _Plugin()
    pm.register(plugin, name="test-echo")
    try:
        assert "echo" in names("user") and "scripted" in names("user")
        user = make_user("echo:http://127.0.0.1:1/v1", EpisodeConfig())
        assert isinstance(user, _EchoUser) and user.arg == "http://127.0.0.1:1/v1"
    finally:
        pm.unregister(plugin)
    with pytest.raises(UnknownNameError, match="valid values: litellm, openai, scripted"):
        make_user("echo", EpisodeConfig())
