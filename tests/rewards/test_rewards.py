"""Reward shapers: hand-computed values, missing components, the official reward kept."""

from __future__ import annotations

import asyncio

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import ConfigError
from tau_adapters.plugins import check_names, hookimpl, make_shaper, plugin_manager
from tau_adapters.rewards.shapers import (
    BinaryShaper,
    CurriculumShaper,
    PartialShaper,
    Shaped,
    components,
    get_shaper,
)


def info(**fields):
    return {
        "reward": fields.pop("reward", 0.0),
        "reward_basis": fields.pop("basis", None),
        "db_check": fields.pop("db", None),
        "action_checks": fields.pop("actions", None),
        "communicate_checks": fields.pop("communicate", None),
        "env_assertions": fields.pop("env", None),
    }


AIRLINE_LIKE = info(
    basis=["DB", "COMMUNICATE"],
    db={"db_match": False, "db_reward": 0.0},
    actions=[{"action_match": True}, {"action_match": False}],
    communicate=[{"met": True}],
)
TELECOM_LIKE = info(
    basis=["ENV_ASSERTION", "ACTION"],
    db={"db_match": True, "db_reward": 1.0},  # computed by tau2 but not in the basis
    actions=[{"action_match": True}],
    env=[{"met": True}, {"met": False}],
)


def test_components_only_those_the_task_has() -> None:
    assert components(AIRLINE_LIKE) == {"action": 0.5, "communicate": 1.0, "db": 0.0}
    assert components(TELECOM_LIKE) == {"action": 1.0, "env_assertion": 0.5}
    assert components(info()) == {}


def test_partial_by_hand_with_recipe_defaults() -> None:
    shaper = make_shaper(EpisodeConfig.build(reward="partial"))
    shaped = shaper.shape(AIRLINE_LIKE, domain="airline", task_id="1", official=0.0)
    # db weight 0 by default: (0.5*0.5 + 0.15*1.0) / (0.5 + 0.15); alpha 0.25 x 1.0
    assert shaped.components["partial_score"] == pytest.approx(0.40 / 0.65)
    assert shaped.value == pytest.approx(0.25 * 0.40 / 0.65)
    assert shaped.official == 0.0
    telecom = shaper.shape(TELECOM_LIKE, domain="telecom", task_id="t", official=0.0)
    # (0.5*1.0 + 0.35*0.5) / 0.85; alpha 0.25 x 1.6
    assert telecom.value == pytest.approx(0.4 * 0.675 / 0.85)


def test_partial_with_custom_weights_and_success() -> None:
    shaper = PartialShaper(alpha=0.5, weights={"action": 1, "communicate": 0, "db": 1})
    shaped = shaper.shape(AIRLINE_LIKE, domain="retail", task_id="x", official=1.0)
    assert shaped.components["partial_score"] == pytest.approx((0.5 + 0.0) / 2)
    assert shaped.value == pytest.approx(1.0 + 0.5 * 0.25)
    assert shaped.official == 1.0


def test_unscored_episode_gets_no_partial_credit() -> None:
    shaper = PartialShaper()
    shaped = shaper.shape(info(), domain="airline", task_id="1", official=0.0)
    assert shaped.value == 0.0 and shaped.components["partial_score"] == 0.0
    assert shaper.shape(None, domain="airline", task_id="1", official=0.0).value == 0.0


def test_binary_is_the_official_reward() -> None:
    assert BinaryShaper().shape(AIRLINE_LIKE, domain="a", task_id="1", official=1.0) == Shaped(
        "binary", 1.0, 1.0
    )


def test_curriculum_weights_mastered_and_hopeless_tasks() -> None:
    shaper = CurriculumShaper(
        window=4, min_attempts=3, solved_weight=0.2, hard_weight=0.3, max_tasks=2
    )
    for _ in range(4):
        shaper.observe(domain="d", task_id="easy", official=1.0)
        shaper.observe(domain="d", task_id="hard", official=0.0)
    assert shaper.weight("d", "easy") == 0.2
    assert shaper.weight("d", "hard") == 0.3
    assert shaper.weight("d", "new") == 1.0
    # The window slides: four recent failures make "easy" hard.
    for _ in range(4):
        shaper.observe(domain="d", task_id="easy", official=0.0)
    assert shaper.success_rate("d", "easy") == (0.0, 4)
    # Bounded memory: a third task evicts the least recently seen one.
    shaper.observe(domain="d", task_id="third", official=1.0)
    assert shaper.success_rate("d", "hard") == (None, 0)
    shaped = shaper.shape(AIRLINE_LIKE, domain="d", task_id="easy", official=0.0)
    assert shaped.name == "curriculum" and shaped.weight == 0.3 and shaped.official == 0.0


class _DoublePlugin:
    @hookimpl
    def register_reward_shapers(self):
        class Double(BinaryShaper):
            name = "double"

            def shape(self, reward_info, *, domain, task_id, official):
                return Shaped(self.name, 2 * official, official)

        return {"double": lambda config: Double()}


def test_user_shaper_through_the_hook() -> None:
    pm = plugin_manager()
    plugin = _DoublePlugin()
    pm.register(plugin, name="test-double")
    try:
        shaped = make_shaper(EpisodeConfig.build(reward="double")).shape(
            None, domain="a", task_id="1", official=1.0
        )
        assert shaped.value == 2.0 and shaped.official == 1.0
    finally:
        pm.unregister(plugin)
    # Unregistered again: the name is refused when the config is built (issue 26), not later.
    with pytest.raises(
        ConfigError, match="binary, curriculum, official, official-no-judge, partial"
    ):
        EpisodeConfig.build(reward="double")


def test_env_names_of_recipes_configure_shaping() -> None:
    config = EpisodeConfig.from_env(
        {"TAU2_REWARD_ALPHA": "0.5", "TAU2_PARTIAL_DB_WEIGHT": "0.2"}, reward="partial"
    )
    assert config.reward_alpha == 0.5 and config.reward_db_weight == 0.2


def test_rollout_keeps_the_official_reward_next_to_the_shaped_one() -> None:
    pytest.importorskip("tau2", reason="tau2 is not installed")
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.rollout import rollout

    from helpers import PerturbedOracle

    config = EpisodeConfig.build(domain="airline", reward="partial")
    task = next(
        t for t in get_domain("airline").tasks("test") if len(t.evaluation_criteria.actions) > 2
    )
    good = asyncio.run(rollout(task, config))
    bad = asyncio.run(rollout(task, config, policy=PerturbedOracle("drop_write", "airline")))
    assert good.reward == 1.0 and good.shaped_reward == pytest.approx(1.0 + 0.25 * 1.0)
    assert bad.reward == 0.0 and 0.0 < bad.shaped_reward < 0.25
    row = bad.to_row()
    assert row["reward"] == 0.0 and row["shaped_reward"] == bad.shaped_reward
    assert row["reward_shaping"]["official"] == 0.0
    assert get_shaper(config) is get_shaper(config)


class _ScaledPlugin:
    """A third-party shaper with its own settings model, fed from ``reward_options``."""

    @hookimpl
    def register_reward_shapers(self):
        from pydantic import BaseModel, ConfigDict

        class Settings(BaseModel):
            model_config = ConfigDict(extra="forbid")
            factor: float = 1.0

        class Scaled(BinaryShaper):
            name = "scaled"

            def __init__(self, factor: float) -> None:
                self.factor = factor

            def shape(self, reward_info, *, domain, task_id, official):
                return Shaped(self.name, self.factor * official, official)

        def make(config, settings):
            return Scaled(settings.factor)

        make.settings_model = Settings
        return {"scaled": make}


def test_reward_options_reach_a_third_party_shaper() -> None:
    pm = plugin_manager()
    plugin = _ScaledPlugin()
    pm.register(plugin, name="test-scaled")
    try:
        config = EpisodeConfig.build(reward="scaled", reward_options='{"factor": 0.5}')
        shaped = make_shaper(config).shape(None, domain="a", task_id="1", official=1.0)
        assert shaped.value == 0.5  # 0.5 x the official 1.0, by hand
        assert (
            make_shaper(EpisodeConfig.build(reward="scaled"))
            .shape(None, domain="a", task_id="1", official=1.0)
            .value
            == 1.0
        )  # the settings model's default factor
        with pytest.raises(
            ConfigError,
            match=r"reward_options for shaper 'scaled': factr: Extra inputs.*valid options: factor",
        ):
            check_names(EpisodeConfig.build(reward="scaled", reward_options={"factr": 2}))
    finally:
        pm.unregister(plugin)


def test_reward_options_refused_by_a_shaper_without_settings() -> None:
    with pytest.raises(ConfigError, match="shaper 'binary' takes no options"):
        check_names(EpisodeConfig.build(reward="binary", reward_options={"alpha": 1}))
