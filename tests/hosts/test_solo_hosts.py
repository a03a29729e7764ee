"""Solo mode (and the think tool) mean the same thing in every host.

One seeded telecom solo episode (tau2's ``llm_agent_solo``: no user, the ticket in the system
prompt, the gold actions as calls, then ``done``) runs through the core rollout (the reference),
the slime adapter's ``generate``, the AReaL workflow (AReaL's own remote SGLang client) and the
SkyRL env (``skyrl_gym.make``, text turns). Each host gets solo mode its own way, with no domain
in its settings (the rows name it): slime from environment variables, AReaL from its ``econfig``,
SkyRL from its ``env_config``. The tau2 messages and reward must be identical, every host must
mark the episode solo, the token-level hosts must keep the core's token ids, loss mask and
logprobs, and the reward must be tau2's own ``evaluate_simulation(solo_mode=True)`` of the
messages. A second episode adds AReaL's think tool: its calls stay in the messages and are left
out of what tau2 scores.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tau_adapters.errors import install_hint

from conftest import requires_tau2

pytest.importorskip("transformers", reason="solo host parity needs the testing extra")

from slime_helpers import TicketOracleEngine, slime_args, use_slime
from tau_adapters.agents.token_policy import TokenPolicy, load_template
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.testing import LoopbackEngine

pytestmark = requires_tau2

DOMAIN, SPLIT = "telecom", "full"
#: AReaL's think tool answers every call with this (examples/tau2/agent.py), written out here.
AREAL_THINK_ANSWER = "Your thoughts are recorded. Please continue your work."


def _task() -> Any:
    # Several gold actions (user-side device actions among them, which solo makes direct calls).
    tasks = get_domain(DOMAIN).tasks(SPLIT)[:100]
    return max(tasks, key=lambda t: len(t.evaluation_criteria.actions or []))


def _plan(task: Any, think: bool) -> list[str]:
    """The model's turns: tau2's solo oracle (each gold action a call, then ``done``); with
    `think`, a think-only turn first and a think call beside the first gold action."""
    from tau_adapters.episode.text_episode import oracle_texts
    from tau_adapters.parsers.base import HermesParser

    texts = oracle_texts(task, "hermes", solo=True)
    assert '"done"' in texts[-2]  # the gold calls, then done (then a stop that is never asked)
    if not think:
        return texts
    parser = HermesParser()
    first = parser.render_call(
        "think", {"thoughts": "The ticket: check the line, then the device."}
    )
    second = parser.render_call("think", {"thoughts": "That call first; the rest follow."})
    return [first, texts[0] + "\n" + second, *texts[1:]]


@pytest.fixture(scope="module", params=["solo", "solo+think"])
def scenario(request):
    think = request.param == "solo+think"
    template = load_template("local:chatml")
    task = _task()
    server = LoopbackEngine(
        template.tokenizer, canned=TicketOracleEngine(template, [(task, _plan(task, think))])
    )
    server.start()
    try:
        core = _core(server, task, think)  # the reference every host is compared with
        yield think, task, server, core
    finally:
        server.stop()


def _dump(messages: list[Any]) -> list[dict]:
    return [m.model_dump(mode="json", exclude={"timestamp"}) for m in messages]


def _without_think(messages: list[Any]) -> list[Any]:
    """The messages with every think call and its answer removed (written here, by hand: the
    reference for "left out of scoring")."""
    ids = {
        c.id for m in messages for c in (getattr(m, "tool_calls", None) or []) if c.name == "think"
    }
    out = []
    for m in messages:
        if m.role == "tool" and m.id in ids:
            continue
        calls = [c for c in (getattr(m, "tool_calls", None) or []) if c.name != "think"]
        if m.role == "assistant" and m.tool_calls and len(calls) != len(m.tool_calls):
            if not calls and not m.content:
                continue
            m = m.model_copy(update={"tool_calls": calls or None})
        out.append(m)
    return out


def _core(server: Any, task: Any, think: bool) -> Any:
    from tau_adapters.episode.rollout import rollout

    config = EpisodeConfig.build(
        domain=DOMAIN,
        split=SPLIT,
        solo_mode=True,
        add_thinking_tool=think,
        policy="sglang:x",
        tokenizer="local:chatml",
        max_new_tokens=512,
    )
    policy = TokenPolicy(server.url, config)
    return asyncio.run(rollout(task, config, policy=policy, split=SPLIT))


def _slime(server: Any, task: Any, think: bool, monkeypatch) -> tuple[Any, Any]:
    use_slime()
    import tau_adapters.slime as adapter
    from slime.utils.types import Sample

    import tau_adapters.episode.rollout as core_rollout

    kept: list[Any] = []
    original = core_rollout.rollout

    async def recording(*args: Any, **kwargs: Any) -> Any:
        trajectory = await original(*args, **kwargs)
        kept.append(trajectory)
        return trajectory

    monkeypatch.setattr(core_rollout, "rollout", recording)
    # slime's way: environment variables beside its arguments (both spellings), no domain.
    monkeypatch.delenv("TAU_ADAPTERS_DOMAIN", raising=False)
    monkeypatch.delenv("TAU2_DOMAIN", raising=False)
    monkeypatch.setenv("TAU_ADAPTERS_SOLO_MODE", "1")
    if think:
        monkeypatch.setenv("TAU2_THINKING_TOOL", "true")
    monkeypatch.setenv("TAU_ADAPTERS_MAX_NEW_TOKENS", "512")
    adapter.adapter._configs.clear()
    sample = Sample(
        group_index=0,
        index=0,
        prompt=f"{DOMAIN}/{SPLIT}/{task.id}",
        metadata={"domain": DOMAIN, "split": SPLIT, "task_id": task.id},
    )
    params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 65536, "sampling_seed": 0}
    args = slime_args(server, rollout_max_response_len=65536)
    try:
        out = asyncio.run(adapter.generate(args, sample, params))
    finally:
        adapter.adapter._configs.clear()
    return out, kept[0]


def _areal(server: Any, task: Any, think: bool) -> tuple[Any, Any]:
    pytest.importorskip(
        "areal.api.workflow_api",
        reason="areal is not installed: pip install --no-deps areal==1.0.4, then the 'areal' extra",
    )
    import tau_adapters.areal as adapter
    from areal.api.cli_args import InferenceEngineConfig
    from areal.engine.sglang_remote import RemoteSGLangEngine

    engine = RemoteSGLangEngine(
        InferenceEngineConfig(experiment_name="tau", trial_name="solo", setup_timeout=30)
    )
    engine.initialize(addr=f"{server.host}:{server.port}", train_data_parallel_size=1)
    try:
        kept: list[Any] = []
        # AReaL's way: its tau2 example's econfig names (no domain: the rows carry it).
        workflow = adapter.Tau2Workflow(
            {"solo_mode": True, "add_thinking_tool": think, "max_new_tokens": 512},
            tokenizer="local:chatml",
            on_trajectory=kept.append,
        )
        row = {"domain": DOMAIN, "split": SPLIT, "task_id": task.id, "trial": 0}
        out = asyncio.run(workflow.arun_episode(engine, row))
    finally:
        engine.destroy()
    return out, kept[0]


def _skyrl(task: Any, think: bool, texts: list[str]) -> tuple[Any, list[dict], dict]:
    skyrl_gym = pytest.importorskip(
        "skyrl_gym", reason="skyrl-gym is not installed: " + install_hint("skyrl")
    )
    from tau_adapters.skyrl import register

    from tau_adapters.episode.tasks import TaskRef

    register()
    # SkyRL's way: the env config block (environment.skyrl_gym.tau2), the row names the task.
    env = skyrl_gym.make(
        "tau2",
        env_config={"solo_mode": True, "add_thinking_tool": think},
        extras={"extra_info": TaskRef(DOMAIN, SPLIT, task.id).to_row(), "max_turns": 60},
    )
    opening, _ = env.init([{"role": "user", "content": "placeholder"}])
    metadata: dict = {}
    for text in texts:
        out = env.step(text)
        if out["done"]:
            metadata = out["metadata"]
            break
    env.get_metrics()
    env.close()
    return env.trajectory, opening, metadata


def test_solo_core_episode_is_tau2s(scenario, official_score) -> None:
    think, task, _, core = scenario
    assert core.status == "completed" and core.termination_reason == "agent_stop", core.error
    # tau2's solo trajectory: no user anywhere; the last message is tau2's rewritten `done`.
    assert all(m.role != "user" for m in core.messages)
    assert core.messages[-1].role == "assistant" and core.messages[-1].content == "###STOP###"
    row = core.to_row()
    assert row["solo_mode"] is True and row.get("thinking_tool", False) is think
    # The reward is tau2's: its own evaluator, solo_mode=True, on the messages (think calls out).
    reference = official_score(
        DOMAIN, task, _without_think(core.messages), core.termination_reason, solo_mode=True
    )
    expected = float(reference.reward)
    assert core.reward == expected == 1.0  # the oracle solves every telecom task in solo mode
    if think:
        calls = [c for m in core.messages if m.role == "assistant" for c in m.tool_calls or []]
        think_ids = [c.id for c in calls if c.name == "think"]
        assert len(think_ids) == 2  # kept in the messages...
        answers = [m for m in core.messages if m.role == "tool" and m.id in think_ids]
        assert [m.content for m in answers] == [AREAL_THINK_ANSWER] * 2
        assert core.counts["think_calls"] == 2
        # ...and never sent to the environment (no error, no tool-call count)
        assert core.counts["tool_calls"] == len(task.evaluation_criteria.actions)
        assert core.counts["tool_errors"] == 0
        assert len(_without_think(core.messages)) == len(core.messages) - 3  # 2 answers, 1 turn


def test_solo_slime_equals_the_core(scenario, monkeypatch) -> None:
    think, task, server, core = scenario
    assert core.reward == 1.0, core.error
    ids = core.transcript.ids.tolist()
    prompt_len = core.transcript.prompt_len

    sample, slime_trajectory = _slime(server, task, think, monkeypatch)
    assert sample.tokens == ids
    assert sample.response_length == len(ids) - prompt_len
    assert sample.loss_mask == core.transcript.loss_mask.tolist()
    assert sample.rollout_log_probs == pytest.approx(core.transcript.logprobs.tolist(), abs=1e-6)
    assert sample.reward == core.reward
    assert sample.metadata["solo_mode"] is True
    assert sample.metadata.get("thinking_tool", False) is think
    assert not sample.remove_sample
    assert slime_trajectory.seed == core.seed
    assert _dump(slime_trajectory.messages) == _dump(core.messages)


def test_solo_skyrl_equals_the_core(scenario) -> None:
    think, task, _, core = scenario
    assert core.reward == 1.0, core.error
    ids = core.transcript.ids.tolist()
    # SkyRL samples the model itself and hands the env text: the same model turns as text.
    template = load_template("local:chatml")
    texts = [
        template.decode([t for t in ids[s.start : s.end] if t not in template.stop_ids])
        for s in core.transcript.spans
        if s.kind == "model"
    ]
    skyrl_trajectory, opening, metadata = _skyrl(task, think, texts)
    assert [m["role"] for m in opening] == ["system"]  # no user turn: the ticket is in the system
    assert task.ticket in opening[0]["content"] and '"name": "done"' in opening[0]["content"]
    assert ('"name": "think"' in opening[0]["content"]) is think
    assert skyrl_trajectory.reward == core.reward
    assert skyrl_trajectory.seed == core.seed
    assert skyrl_trajectory.to_row()["solo_mode"] is True
    assert metadata["solo_mode"] is True and metadata.get("thinking_tool", False) is think
    assert _dump(skyrl_trajectory.messages) == _dump(core.messages)


def test_solo_areal_equals_the_core(scenario) -> None:
    think, task, server, core = scenario
    assert core.reward == 1.0, core.error
    ids = core.transcript.ids.tolist()
    prompt_len = core.transcript.prompt_len
    out, areal_trajectory = _areal(server, task, think)
    assert out is not None, f"AReaL dropped the episode: {areal_trajectory.error}"
    assert out["input_ids"][0].tolist() == ids
    assert out["loss_mask"][0].tolist() == [0] * prompt_len + core.transcript.loss_mask.tolist()
    assert out["logprobs"][0].tolist()[prompt_len:] == pytest.approx(
        core.transcript.logprobs.tolist(), abs=1e-5
    )
    assert float(out["rewards"][0]) == core.reward
    assert areal_trajectory.seed == core.seed
    assert areal_trajectory.to_row()["solo_mode"] is True
    assert areal_trajectory.to_row().get("thinking_tool", False) is think
    assert _dump(areal_trajectory.messages) == _dump(core.messages)


def test_solo_start_up_check_is_for_the_runs_domain_and_rows_are_checked_alone(
    monkeypatch,
) -> None:
    """slime with solo mode and no domain set: the rows name theirs (the test above runs telecom
    rows so). A domain set for the run that tau2 has no solo mode for fails at start-up; a row
    naming one is refused with the same reason when its episode starts."""
    use_slime()
    import tau_adapters.slime as adapter
    from slime.utils.types import Sample

    from tau_adapters.errors import ConfigError

    server = LoopbackEngine(load_template("local:chatml").tokenizer).start()  # never sampled

    monkeypatch.setenv("TAU_ADAPTERS_SOLO_MODE", "1")
    monkeypatch.setenv("TAU_ADAPTERS_DOMAIN", "airline")
    adapter.adapter._configs.clear()
    with pytest.raises(ConfigError, match="does not support solo mode"):
        adapter.config_from_args(slime_args(server))
    monkeypatch.delenv("TAU_ADAPTERS_DOMAIN")
    adapter.adapter._configs.clear()
    airline = get_domain("airline")
    task = airline.tasks(airline.default_split())[0]
    sample = Sample(
        group_index=0,
        index=0,
        prompt="",
        metadata={"domain": "airline", "split": airline.default_split(), "task_id": task.id},
    )
    params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 512}
    try:
        with pytest.raises(ConfigError, match=r"'airline'.*does not support solo mode"):
            asyncio.run(adapter.generate(slime_args(server), sample, params))
    finally:
        adapter.adapter._configs.clear()
        server.stop()
