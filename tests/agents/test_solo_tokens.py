"""Solo episodes (tau2's llm_agent_solo) token level, through the loopback engine and real chat
templates: the kept ids match a full render (`check_tokens`), or the template is refused at
start-up with the reason when it cannot render a conversation without a user turn."""

from __future__ import annotations

import asyncio

import pytest

from conftest import requires_tau2

pytest.importorskip("torch", reason="token-level tests need the testing extra (torch)")
pytest.importorskip("transformers", reason="token-level tests need the testing extra")

from test_family_episodes import HarmonyOracle
from test_token_rollout import _assert_token_invariants

from family_tokenizers import family_tokenizer
from tau_adapters.agents.token_policy import template_for
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.errors import ConfigError
from tau_adapters.testing import LoopbackEngine

from token_helpers import ASSETS, ForcedOracle, have_assets

pytestmark = requires_tau2

needs_assets = pytest.mark.skipif(
    not have_assets(), reason=f"shared tokenizer assets not found at {ASSETS}"
)

#: id -> (tokenizer spec or family name, template file, parser)
STYLES = {
    "local-chatml": ("local:chatml", None, "hermes"),
    "qwen2.5": (str(ASSETS / "qwen2.5-instruct"), None, "hermes"),
    "qwen3-hybrid": (str(ASSETS / "qwen3-hybrid"), None, "hermes"),
    "qwen3-instruct-2507": (str(ASSETS / "qwen3-4b-instruct-2507"), None, "hermes"),
    "llama-3.1": ("local:headers", str(ASSETS / "templates/llama-3.1-8b-instruct.jinja"), "json"),
    "gpt-oss": ("family:gpt-oss", None, "harmony"),
}

#: The guard some Qwen3 releases carry after their last-user-query loop (the copies in the shared
#: assets do not): with no user message it raises.
QWEN3_GUARD = (
    "{%- if ns.multi_step_tool %}{{ raise_exception('No user query found in messages.') }}"
    "{%- endif %}\n"
)


def _config(name, tmp_path_factory, **extra):
    spec, template_file, parser = STYLES[name]
    if spec.startswith("family:"):
        folder = tmp_path_factory.mktemp(name)
        family_tokenizer(spec.removeprefix("family:")).save_pretrained(folder)
        spec = str(folder)
    return EpisodeConfig.build(
        domain="telecom",
        split="full",
        solo_mode=True,
        policy="sglang:loopback",
        tokenizer=spec,
        chat_template=template_file,
        parser=parser,
        check_tokens=True,
        **extra,
    )


def _tasks(n: int):
    # Several gold actions: several tool rounds, then `done`.
    tasks = get_domain("telecom").tasks("full")
    return sorted(tasks[:200], key=lambda t: -len(t.evaluation_criteria.actions or []))[:n]


def _run(config, template):
    engine = LoopbackEngine(template.tokenizer, seed=11).start()
    try:
        oracle = HarmonyOracle if config.parser == "harmony" else ForcedOracle
        tasks = _tasks(2)
        policies = [oracle(engine.url, config) for _ in tasks]

        async def run():
            return await asyncio.gather(
                *(rollout(t, config, policy=p) for t, p in zip(tasks, policies, strict=True))
            )

        for trajectory, policy in zip(asyncio.run(run()), policies, strict=True):
            assert trajectory.status == "completed", trajectory.error
            assert trajectory.termination_reason == "agent_stop"
            assert trajectory.reward == 1.0, trajectory.reward_info
            # No user anywhere: tau2's solo trajectory, the transcript starting at the system.
            assert all(m.role != "user" for m in trajectory.messages)
            _assert_token_invariants(trajectory, policy, engine, template)
            # The sampled `done` call is in the tokens although tau2's trajectory drops it.
            assert "done" in policy.texts[-1]
    finally:
        engine.stop()


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[] if n == "local-chatml" else [needs_assets]) for n in STYLES],
)
def test_solo_episode_keeps_exact_tokens(name, tmp_path_factory) -> None:
    config = _config(name, tmp_path_factory)
    if name == "llama-3.1":
        # Llama 3.1 puts the tool schemas into the first user message by default: with no user
        # turn it raises, so it is refused at start-up with the template's own message...
        with pytest.raises(ConfigError, match="no first user message"):
            template_for(config)
        # ...and renders tau2's solo prompt exactly with its own switch for system-side tools.
        config = config.model_copy(
            update={"chat_template_kwargs": {"tools_in_user_message": False}}
        )
    _run(config, template_for(config))


@needs_assets
def test_template_without_user_query_is_refused_at_start_up_unless_ticket_as_user(
    tmp_path,
) -> None:
    source = (ASSETS / "qwen3-hybrid" / "chat_template.jinja").read_text(encoding="utf-8")
    anchor = "{%- endfor %}\n{%- for message in messages %}"
    assert anchor in source
    guarded = tmp_path / "qwen3-guarded.jinja"
    guarded.write_text(
        source.replace(
            anchor, "{%- endfor %}\n" + QWEN3_GUARD + "{%- for message in messages %}", 1
        ),
        encoding="utf-8",
    )
    config = EpisodeConfig.build(
        domain="telecom",
        split="full",
        solo_mode=True,
        policy="sglang:loopback",
        tokenizer=str(ASSETS / "qwen3-hybrid"),
        chat_template=str(guarded),
        check_tokens=True,
    )
    with pytest.raises(ConfigError, match="No user query found") as info:
        template_for(config)
    assert "solo_ticket_as_user" in str(info.value)
    # Outside solo mode the same template is fine (every episode has a user turn).
    template_for(config.model_copy(update={"solo_mode": False}))
    # The opt-in deviation: the ticket as a first user turn, outside tau2's trajectory.
    config = config.model_copy(update={"solo_ticket_as_user": True})
    template = template_for(config)
    _run(config, template)
