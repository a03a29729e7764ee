"""The SkyRL adapter against the real skyrl-gym: registration, oracle calibration through
``skyrl_gym.make``, thread safety, faults that must not raise, parity with the core rollout, the
turn-limit warning, metrics and the Parquet export SkyRL reads."""

from __future__ import annotations

import asyncio
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tau_adapters.errors import install_hint

from conftest import requires_tau2

skyrl_gym = pytest.importorskip(
    "skyrl_gym", reason="skyrl-gym is not installed: " + install_hint("skyrl")
)

pytestmark = requires_tau2

ROW_PROMPT = [{"role": "user", "content": "placeholder: the env builds the real prompt"}]


@pytest.fixture(scope="module")
def registered() -> str:
    from tau_adapters.skyrl import register

    register()
    return "tau2"


def _extras(ref: Any, max_turns: int = 60, **more: Any) -> dict[str, Any]:
    return {"extra_info": ref.to_row(), "max_turns": max_turns, **more}


def _play(env_id: str, ref: Any, texts: list[Any], env_config: dict | None = None, **extras: Any):
    """One episode through skyrl_gym.make, as SkyRL's generator drives it."""
    env = skyrl_gym.make(env_id, env_config=env_config or {}, extras=_extras(ref, **extras))
    chat, _ = env.init(list(ROW_PROMPT))
    outputs = []
    for text in texts:
        out = env.step(text)
        outputs.append(out)
        if out["done"]:
            break
    metrics = env.get_metrics()
    env.close()
    return env, chat, outputs, metrics


def _refs(domain: str, split: str = "test") -> list[Any]:
    from tau_adapters.episode.tasks import task_refs

    return task_refs(domain, split)


def _oracle(ref: Any) -> list[str]:
    from tau_adapters.episode.text_episode import oracle_texts

    return oracle_texts(ref.load(), "hermes")


# -- registration --------------------------------------------------------------------------------
def test_register_is_idempotent_and_refuses_a_foreign_id(monkeypatch) -> None:
    from skyrl_gym.envs import registration
    from tau_adapters.skyrl import register

    from tau_adapters.errors import ConfigError

    assert register() == ["tau2", "tau_bench"]
    assert register() == ["tau2", "tau_bench"]  # skyrl-gym itself would raise RegistrationError
    assert registration.registry["tau2"].entry_point == "tau_adapters.skyrl.env:Tau2Env"
    monkeypatch.setitem(
        registration.registry,
        "tau2",
        registration.EnvSpec(id="tau2", entry_point="somewhere.else:Env"),
    )
    with pytest.raises(ConfigError, match="already has an environment 'tau2'"):
        register()


def test_register_checks_the_configuration_at_start_up(monkeypatch) -> None:
    from tau_adapters.skyrl import register

    from tau_adapters.errors import ConfigError

    with pytest.raises(ConfigError, match="max_steps"):
        register(env_config={"max_steps": 0})
    monkeypatch.setenv("TAU_ADAPTERS_PARSER", "no-such-parser")
    with pytest.raises(ConfigError, match="no-such-parser"):
        register()


# -- calibration ---------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", ["airline", "retail", "telecom"])
def test_oracle_text_actions_score_one_on_every_test_task(registered, domain) -> None:
    refs = _refs(domain)
    assert len(refs) == {"airline": 20, "retail": 40, "telecom": 40}[domain]
    for ref in refs:
        texts = _oracle(ref)
        _, chat, outputs, metrics = _play(registered, ref, texts)
        last = outputs[-1]
        assert last["done"], ref
        assert last["reward"] == 1.0, (ref, last["metadata"])
        assert last["metadata"]["termination_reason"] in ("user_stop", "agent_stop")
        assert last["metadata"]["remove_sample"] is False
        assert all(not out["done"] and out["reward"] == 0.0 for out in outputs[:-1])
        assert metrics["success"] == 1.0
        assert chat[0]["role"] == "system"


def test_prompt_carries_policy_call_format_and_tool_schemas(registered) -> None:
    from tau_adapters.domains import get_domain

    ref = _refs("airline")[0]
    env = skyrl_gym.make(registered, env_config={}, extras=_extras(ref))
    chat, info = env.init(list(ROW_PROMPT))
    env.close()
    system = chat[0]["content"]
    backend = get_domain("airline")
    assert backend.policy.strip()[:200] in system
    assert "<tool_call>" in system  # hermes' call format, rendered for a template without tools=
    for tool in backend.tool_schemas:
        assert f'"name": "{tool["function"]["name"]}"' in system
    assert [m["role"] for m in chat[1:]] == ["assistant", "user"]  # tau2's greeting, then the user
    assert info["task"] == ref.to_row()


# -- threads ---------------------------------------------------------------------------------------
def _variant(ref: Any, index: int) -> list[Any]:
    """Different outcomes per episode so that a mix-up between threads changes rewards."""
    texts = _oracle(ref)
    kind = index % 4
    if kind == 1:
        return texts[1:]  # first gold action skipped: usually a 0
    if kind == 2:
        return ['<tool_call>{"name": "x", "arguments": ', *texts]  # one malformed turn first
    if kind == 3:
        return ["I cannot help with that.", "###STOP###"]
    return texts


def _outcome(ref: Any, index: int) -> tuple:
    env, _, outputs, metrics = _play("tau2", ref, _variant(ref, index))
    meta = outputs[-1]["metadata"]
    messages = [(m.role, m.content) for m in env.trajectory.messages]
    return (outputs[-1]["reward"], meta["termination_reason"], metrics["turns"], messages)


def test_32_threads_give_the_rewards_of_sequential_runs(registered) -> None:
    refs = (_refs("airline")[:11] + _refs("retail")[:11] + _refs("telecom")[:10])[:32]
    assert len(refs) == 32
    sequential = [_outcome(ref, i) for i, ref in enumerate(refs)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        threaded = list(pool.map(_outcome, refs, range(len(refs))))
    assert threaded == sequential
    rewards = {outcome[0] for outcome in sequential}
    assert rewards == {0.0, 1.0}  # the mix really differs between episodes


# -- faults never raise ----------------------------------------------------------------------------
def test_malformed_actions_are_observed_and_never_raise(registered) -> None:
    ref = _refs("retail")[0]
    env = skyrl_gym.make(registered, env_config={"max_errors": 3}, extras=_extras(ref))
    env.init(list(ROW_PROMPT))
    out = env.step('<tool_call>{"name": "get_user_details", "arguments": {</tool_call>')
    assert not out["done"]
    assert out["observations"][0]["role"] == "tool"
    assert "invalid JSON" in out["observations"][0]["content"]
    for junk in (b"\xff\xfe<tool_call>", "</tool_call>", "<tool_call>[]</tool_call>") * 3:
        out = env.step(junk)  # type: ignore[arg-type]
        if out["done"]:
            break
    assert out["done"]
    assert out["reward"] == 0.0
    assert out["metadata"]["termination_reason"] == "too_many_errors"
    assert out["metadata"]["parse_errors"] >= 3
    assert out["metadata"]["remove_sample"] is False  # the model's fault: it trains on the zero
    env.close()
    # An empty turn (or None from a broken host) ends the episode as tau2 does, without raising.
    env = skyrl_gym.make(registered, env_config={}, extras=_extras(ref))
    env.init(list(ROW_PROMPT))
    out = env.step(None)  # type: ignore[arg-type]
    assert out["done"] and out["reward"] == 0.0
    assert "empty message" in out["metadata"]["error"]
    env.close()


def test_on_malformed_remove_flags_the_sample(registered) -> None:
    ref = _refs("retail")[0]
    _, _, outputs, metrics = _play(
        registered, ref, ["<tool_call>not json</tool_call>"], {"on_malformed": "remove"}
    )
    meta = outputs[-1]["metadata"]
    assert outputs[-1]["done"] and outputs[-1]["reward"] == 0.0
    assert meta["remove_sample"] is True and meta["do_not_train"] is True
    assert "TauSkyRLGymGenerator" in meta["how_to_filter"]
    assert metrics["remove_sample"] == 1.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed when the block ends: connections are refused


def test_dead_user_endpoint_ends_the_episode_without_raising(registered) -> None:
    port = _closed_port()
    config = {
        "user": f"openai:http://127.0.0.1:{port}/v1",
        "user_model": "user-sim",
        "user_attempts": 1,
        "user_timeout_s": 5.0,
    }
    ref = _refs("airline")[0]
    _, chat, outputs, metrics = _play(registered, ref, ["Hello, how can I help?"] * 3, config)
    meta = outputs[-1]["metadata"]
    assert outputs[-1]["done"] and len(outputs) == 1
    assert outputs[-1]["reward"] == 0.0
    assert meta["status"] == "failed" and meta["termination_reason"] == "user_error"
    assert meta["remove_sample"] is True
    assert "user simulator" in meta["error"]
    assert chat[0]["role"] == "system"
    assert metrics["status"] == "failed"


def test_environment_errors_never_raise(registered, monkeypatch) -> None:
    from tau_adapters.domains import get_domain

    ref = _refs("airline")[0]
    # A row naming a task that does not exist.
    missing = type(ref)("airline", "test", "no-such-task")
    _, _, outputs, _ = _play(registered, missing, ["hi"])
    assert outputs[-1]["done"] and outputs[-1]["metadata"]["remove_sample"] is True
    assert "no-such-task" in outputs[-1]["metadata"]["error"]
    # A row with no task reference at all.
    env = skyrl_gym.make(registered, env_config={}, extras={"max_turns": 5})
    chat, _ = env.init(list(ROW_PROMPT))
    assert chat == ROW_PROMPT
    out = env.step("hi")
    assert out["done"] and out["metadata"]["remove_sample"] is True
    env.close()
    # Environment set-up raising inside tau2.
    backend = get_domain("airline")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(backend, "initial_environment", broken)
    _, _, outputs, _ = _play(registered, ref, ["hi"])
    meta = outputs[-1]["metadata"]
    assert outputs[-1]["done"] and meta["status"] == "failed" and meta["remove_sample"] is True
    assert "database unavailable" in meta["error"]


def test_an_unexpected_core_failure_mid_episode_does_not_raise(registered, monkeypatch) -> None:
    from tau_adapters.episode.text_episode import TextEpisode

    ref = _refs("retail")[1]
    env = skyrl_gym.make(registered, env_config={}, extras=_extras(ref))
    env.init(list(ROW_PROMPT))

    async def boom(self: Any, text: str) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(TextEpisode, "step", boom)
    out = env.step("hello")
    assert out["done"] and out["reward"] == 0.0
    assert out["metadata"]["remove_sample"] is True and "KeyError" in out["metadata"]["error"]
    assert env.get_metrics()["status"] == "failed"
    env.close()
    env.close()  # twice is harmless


def test_host_stopping_early_ends_the_episode_as_truncated(registered) -> None:
    ref = _refs("airline")[1]
    env = skyrl_gym.make(registered, env_config={}, extras=_extras(ref))
    env.init(list(ROW_PROMPT))
    out = env.step(_oracle(ref)[0])
    assert not out["done"]
    metrics = env.get_metrics()  # SkyRL calls this before close() when it hits its length limit
    assert metrics["status"] == "truncated" and metrics["reward"] == 0.0
    assert metrics["remove_sample"] == 0.0
    env.close()


# -- turn limit ------------------------------------------------------------------------------------
def test_generator_turn_limit_is_honoured_and_warned_about(registered, monkeypatch) -> None:
    from tau_adapters.skyrl import env as env_module

    monkeypatch.setattr(env_module, "_warned", set())
    ref = next(r for r in _refs("retail") if len(_oracle(r)) >= 5)
    texts = _oracle(ref)
    with pytest.warns(RuntimeWarning, match=r"generator.max_turns=1 .*needs at least"):
        _, _, outputs, metrics = _play(registered, ref, texts, max_turns=1)
    assert len(outputs) == 1 and outputs[0]["done"]
    assert outputs[0]["reward"] == 0.0
    assert outputs[0]["metadata"]["status"] == "truncated"
    assert "max_turns=1" in outputs[0]["metadata"]["error"]
    assert metrics["turns"] == 1
    # A turn limit has its own label (not a token budget), and tau2 scored it as its own step
    # limit: tau2's TerminationReason.MAX_STEPS is what its evaluator was given.
    from tau2.data_model.simulation import TerminationReason

    assert outputs[0]["metadata"]["termination_reason"] == "max_turns"
    assert metrics["termination_reason"] == "max_turns"
    info = outputs[0]["metadata"]["reward_info"]["info"]
    assert info["tau2_termination_reason"] == TerminationReason.MAX_STEPS.value
    assert f"Termination reason: {TerminationReason.MAX_STEPS.value}" in info["note"]  # tau2's
    # Enough turns: no warning, and the episode runs to its end.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, _, outputs, _ = _play(registered, ref, texts, max_turns=len(texts))
    assert outputs[-1]["reward"] == 1.0


# -- parity with the core rollout ------------------------------------------------------------------
def _shape(messages: list[Any]) -> list[tuple]:
    out = []
    for m in messages:
        calls = [(c.name, c.arguments, c.requestor) for c in getattr(m, "tool_calls", None) or []]
        out.append((m.role, m.content, calls, getattr(m, "requestor", None)))
    return out


@pytest.mark.parametrize("domain", ["airline", "retail", "telecom"])
def test_seeded_oracle_episode_matches_the_core_rollout(registered, domain) -> None:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.episode.rollout import rollout

    ref = _refs(domain)[2]
    config = EpisodeConfig.build(domain=domain, split="test", seed=7)
    reference = asyncio.run(rollout(ref.load(), config, split="test"))
    env, _, outputs, _ = _play(registered, ref, _oracle(ref), {"seed": 7})
    ours = env.trajectory
    assert _shape(ours.messages) == _shape(reference.messages)
    assert ours.reward == reference.reward == outputs[-1]["reward"] == 1.0
    assert ours.termination_reason == reference.termination_reason
    assert ours.seed == reference.seed == 7
    assert ours.reward_info.model_dump(exclude={"info"}) == reference.reward_info.model_dump(
        exclude={"info"}
    )


# -- metrics ---------------------------------------------------------------------------------------
def test_aggregate_metrics_by_hand() -> None:
    from tau_adapters.skyrl import Tau2Env

    metrics = [
        {"success": 1.0, "turns": 4, "termination_reason": "user_stop", "status": "completed"},
        {"success": 0.0, "turns": 2, "termination_reason": "user_stop", "status": "completed"},
        {"success": 0.0, "turns": 6, "termination_reason": "max_steps", "status": "truncated"},
        {"success": 0.0, "turns": 0, "termination_reason": "user_error", "status": "failed"},
    ]
    out = Tau2Env.aggregate_metrics(metrics)
    assert out["success"] == 0.25
    assert out["turns"] == 3.0
    assert out["termination/user_stop"] == 0.5
    assert out["termination/max_steps"] == 0.25
    assert out["status/failed"] == 0.25
    assert Tau2Env.aggregate_metrics([]) == {}


def test_metrics_count_tool_calls_and_errors(registered) -> None:
    ref = _refs("retail")[0]
    bad_call = (
        '<tool_call>{"name": "get_order_details", "arguments": {"order_id": "#nope"}}</tool_call>'
    )
    texts = [bad_call, *_oracle(ref)]
    _, _, outputs, metrics = _play(registered, ref, texts)
    gold_calls = sum(1 for t in _oracle(ref) if "<tool_call>" in t)
    assert metrics["tool_calls"] == gold_calls + 1
    assert metrics["tool_errors"] == 1
    assert metrics["turns"] == len(outputs)  # the user may stop before the STOP turn
    assert metrics["parse_errors"] == 0


# -- export ----------------------------------------------------------------------------------------
def test_export_skyrl_parquet_rows_drive_the_env(registered, tmp_path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed ([skyrl] extra)")
    from tau_adapters.cli.main import main
    from tau_adapters.episode.text_episode import text_system_prompt

    output = tmp_path / "tau2.parquet"
    assert main(["tasks", "export", "--domain", "airline,retail", "--split", "test",
                 "--output", str(output), "--format", "skyrl"]) == 0  # fmt: skip
    rows = pq.read_table(output).to_pylist()
    assert len(rows) == 20 + 40
    assert set(rows[0]) == {"data_source", "prompt", "env_class", "reward_spec", "extra_info"}
    first = rows[0]
    assert first["data_source"] == "tau2/airline" and first["env_class"] == "tau2"
    assert first["extra_info"] == _refs("airline")[0].to_row()
    assert first["prompt"] == [
        {"role": "system", "content": text_system_prompt("airline", "hermes")}
    ]
    assert first["reward_spec"]["ground_truth"] == "airline/test/" + first["extra_info"]["task_id"]
    row = rows[25]
    # What SkyRL's PromptDataset does with a row: prompt and env_class out, the rest is extras.
    extras = {k: v for k, v in row.items() if k not in ("prompt", "env_class")}
    env = skyrl_gym.make(row["env_class"], env_config={}, extras={**extras, "max_turns": 60})
    chat, _ = env.init(row["prompt"])
    assert chat[0] == row["prompt"][0]
    from tau_adapters.episode.tasks import TaskRef

    ref = TaskRef(**row["extra_info"])
    for text in _oracle(ref):
        out = env.step(text)
    assert out["done"] and out["reward"] == 1.0
    env.close()


def test_export_rows_read_back_with_huggingface_datasets(tmp_path) -> None:
    datasets = pytest.importorskip(
        "datasets", reason="HF datasets (what SkyRL loads Parquet with) is not installed"
    )
    from tau_adapters.hosts.export import export_task_refs

    output = tmp_path / "t.parquet"
    assert export_task_refs(["telecom"], "test", output, "skyrl") == 40
    ds = datasets.load_dataset("parquet", data_files=str(output), keep_in_memory=True)["train"]
    assert len(ds) == 40
    assert [row["extra_info"] for row in ds] == [ref.to_row() for ref in _refs("telecom")]
    assert ds[0]["prompt"][0]["role"] == "system" and ds[0]["env_class"] == "tau2"


# -- the do-not-train filter -----------------------------------------------------------------------
def test_mask_removed_sample_zeroes_flagged_outputs_only() -> None:
    from dataclasses import dataclass, field

    from tau_adapters.skyrl import mask_removed_sample

    @dataclass
    class Output:  # the fields of SkyRL's TrajectoryOutput this touches
        loss_mask: list[int]
        env_metrics: dict = field(default_factory=dict)

    @dataclass
    class StepWise:  # SkyRL's StepWiseOutput: the flag sits in the last step's env_metrics
        step_outputs: list[Output]

    kept = Output([0, 1, 1], {"remove_sample": 0.0})
    assert mask_removed_sample(kept) is False and kept.loss_mask == [0, 1, 1]
    dropped = Output([0, 1, 1, 1], {"remove_sample": 1.0})
    assert mask_removed_sample(dropped) is True and dropped.loss_mask == [0, 0, 0, 0]
    steps = StepWise([Output([1, 1], {}), Output([1, 0, 1], {"remove_sample": 1.0})])
    assert mask_removed_sample(steps) is True
    assert [s.loss_mask for s in steps.step_outputs] == [[0, 0], [0, 0, 0]]
    assert mask_removed_sample(Output([1], {})) is False


def test_background_loop_refuses_to_wait_on_itself() -> None:
    from tau_adapters.runtime import background_loop

    async def inner() -> str:
        async def nothing() -> None:
            return None

        try:
            background_loop.call(nothing(), 1.0)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "deadlock" in background_loop.call(inner(), 5.0)
    assert background_loop.call(asyncio.sleep(0, result=42), 5.0) == 42


def test_tau_bench_v1_through_its_own_env_id_scores_one(registered) -> None:
    pytest.importorskip(
        "tau_bench",
        reason="tau-bench v1 is not installed (README: pip install tau_bench @ git+...)",
    )
    from tau_bench.envs.retail.wiki import WIKI

    from tau_adapters.hosts.export import export_row

    for ref in _refs("tau1-retail")[:4]:
        row = export_row(ref, "skyrl", parser="hermes")
        assert row["env_class"] == "tau_bench" and row["data_source"] == "tau_bench/tau1-retail"
        assert row["prompt"][0]["content"].startswith(WIKI)
        _, chat, outputs, _ = _play("tau_bench", ref, _oracle(ref))
        assert chat[0]["content"].startswith(WIKI)
        assert chat[1]["role"] == "user"  # v1's agent never sees a greeting
        assert outputs[-1]["done"] and outputs[-1]["reward"] == 1.0, outputs[-1]["metadata"]


# -- the trained reward --------------------------------------------------------------------------
def test_final_step_reward_is_the_configured_shaped_reward_with_the_official_beside_it(
    registered,
) -> None:
    """SkyRL trains on the last step's ``reward``: with a reward shaper configured it must be the
    shaped value, and tau2's official reward stays beside it (``raw_reward``). Expected values
    from tau2's own verdict: its reward, and its action checks for the partial credit (only the
    ``action`` component weighted, so the hand computation is alpha * matched / checked)."""
    alpha = 0.5
    env_config = {
        "reward": "partial",
        "reward_alpha": alpha,
        "reward_action_weight": 1.0,
        "reward_communicate_weight": 0.0,
        "reward_env_assertion_weight": 0.0,
        "reward_db_weight": 0.0,
    }
    for ref in _refs("airline"):
        texts = _oracle(ref)
        if len(texts) < 4:
            continue
        # The first gold action skipped: tau2 gives 0, yet some of its action checks match.
        _, _, outputs, metrics = _play(registered, ref, texts[1:], env_config=env_config)
        info = outputs[-1]["metadata"]["reward_info"]  # tau2's RewardInfo, as JSON
        checks = info.get("action_checks") or []
        matched = sum(1 for check in checks if check["action_match"])
        if info["reward"] == 0.0 and checks and matched > 0:
            break
    else:
        pytest.fail("no airline task gives a partial episode with skipped first action")
    last = outputs[-1]
    assert last["done"]
    assert last["metadata"]["raw_reward"] == info["reward"] == 0.0  # tau2's official reward
    assert last["reward"] == pytest.approx(info["reward"] + alpha * matched / len(checks))
    assert last["reward"] > 0.0
    assert metrics["raw_reward"] == 0.0


def test_a_cancelled_env_step_leaves_no_episode_half_written(registered, monkeypatch) -> None:
    """SkyRL has no abort path (README): when one env's step is cut (here its tool call hangs
    past the step timeout and the episode is cancelled), that sample is left out of training,
    the other envs of the batch finish normally, and the cut episode's trajectory is frozen: the
    orphaned tool thread, when it finally returns, writes nothing into it."""
    import threading
    import time

    from tau_adapters.episode.session import Session

    refs = _refs("airline")[1:4]
    blocked = refs[0].task_id
    release = threading.Event()
    original = Session._call_tool

    def hanging(self: Any, env: Any, call: Any) -> Any:
        if str(self.task.id) == blocked:
            release.wait(20)
        return original(self, env, call)

    monkeypatch.setattr(Session, "_call_tool", hanging)
    envs = [skyrl_gym.make(registered, env_config={}, extras=_extras(ref)) for ref in refs]
    envs[0]._run.timeout_s = 1.0
    episode = envs[0]._run._episode
    texts = {ref.task_id: _oracle(ref) for ref in refs}

    def play(env: Any, ref: Any) -> Any:
        env.init(list(ROW_PROMPT))
        for text in texts[ref.task_id]:
            out = env.step(text)
            if out["done"]:
                break
        metrics = env.get_metrics()
        env.close()
        return out, metrics

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(play, envs, refs))
    (cut, cut_metrics), *others = results
    assert cut["done"] and cut["reward"] == 0.0
    assert cut["metadata"]["remove_sample"] is True and cut_metrics["remove_sample"] == 1.0
    assert "TimeoutError" in cut["metadata"]["error"]
    for out, metrics in others:
        assert out["reward"] == 1.0 and metrics["status"] == "completed"
    trajectory = episode._task.result()  # what the cancelled rollout handed back
    assert trajectory.status == "aborted"
    frozen = [m.model_dump(mode="json") for m in trajectory.messages]
    counts = dict(trajectory.counts)
    release.set()  # the orphaned tool call now returns on its worker thread
    time.sleep(1.0)
    assert [m.model_dump(mode="json") for m in trajectory.messages] == frozen
    assert trajectory.counts == counts
    assert trajectory.messages[-1].role == "assistant" and trajectory.messages[-1].tool_calls
