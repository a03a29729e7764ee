"""The AReaL adapter through AReaL's own types and its own remote SGLang client.

Every model turn goes through `areal.engine.sglang_remote.RemoteSGLangEngine.agenerate` (the real
class from the ``areal`` package, which runs without GPUs) against this library's loopback engine,
a real HTTP server speaking SGLang's ``/generate``. Expected values come from the engine's own
answers (recorded at AReaL's engine interface) or from the core rollout, never from the adapter.
"""

from __future__ import annotations

import asyncio
import pickle
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from conftest import requires_tau2

pytest.importorskip("transformers", reason="the AReaL adapter's tests need the testing extra")
pytest.importorskip(
    "areal.api.workflow_api",
    reason="areal is not installed: pip install --no-deps areal==1.0.4, then the 'areal' extra",
)

import tau_adapters.areal as adapter
from areal.api.cli_args import GenerationHyperparameters, InferenceEngineConfig
from areal.api.workflow_api import RolloutWorkflow
from areal.engine.sglang_remote import RemoteSGLangEngine

from slime_helpers import OracleEngine
from tau_adapters.agents.token_policy import TokenPolicy, load_template
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.errors import ConfigError
from tau_adapters.runtime.scheduling import run_cpu
from tau_adapters.testing import Fault, LoopbackEngine
from tau_adapters.users.scripted import opening_message

pytestmark = requires_tau2
RECIPE = Path(__file__).resolve().parents[2] / "adapters" / "areal"


def _tasks(domain: str, count: int):
    backend = get_domain(domain)
    found = [t for t in backend.tasks(backend.default_split()) if t.evaluation_criteria.actions]
    return found[:count]


def _areal_engine(server: LoopbackEngine, **config) -> RemoteSGLangEngine:
    values = {"experiment_name": "tau", "trial_name": "test", "setup_timeout": 30}
    engine = RemoteSGLangEngine(InferenceEngineConfig(**{**values, **config}))
    engine.initialize(addr=f"{server.host}:{server.port}", train_data_parallel_size=1)
    return engine


@pytest.fixture(scope="module")
def oracle():
    """Loopback engine playing the oracle (instant) for two airline and four mock tasks."""
    template = load_template("local:chatml")
    tasks = _tasks("airline", 2) + _tasks("mock", 4)
    server = LoopbackEngine(template.tokenizer, canned=OracleEngine(template, tasks)).start()
    engine = _areal_engine(server, request_retries=2, request_timeout=5)
    yield server, engine, tasks
    engine.destroy()
    server.stop()


class OracleForcedTiny:
    """A tiny random model teacher-forced to the oracle's turns: whole episodes, real logprobs."""

    def __init__(self, template, tasks):
        from tau_adapters.testing.model import TinyLM

        self.model = TinyLM(len(template.tokenizer), seed=3)
        self.oracle = OracleEngine(template, tasks)

    def sample(self, input_ids, **kwargs):
        kwargs["forced"] = self.oracle(list(input_ids), {})
        return self.model.sample(input_ids, **kwargs)


@pytest.fixture(scope="module")
def tiny():
    template = load_template("local:chatml")
    model = OracleForcedTiny(template, _tasks("mock", 2))
    server = LoopbackEngine(template.tokenizer, model=model).start()
    engine = _areal_engine(server)
    yield server, engine
    engine.destroy()
    server.stop()


@pytest.fixture(autouse=True)
def clean(oracle):
    oracle[0].fault_policy = None
    oracle[0].chat_responder = None
    yield
    oracle[0].fault_policy = None
    oracle[0].chat_responder = None


class Recording:
    """AReaL's engine, with every `ModelResponse` it hands to the workflow kept."""

    def __init__(self, engine):
        self.engine = engine
        self.responses = []

    async def agenerate(self, request):
        response = await self.engine.agenerate(request)
        self.responses.append(response)
        return response


def _workflow(**econfig):
    values = {"domain": "airline", "max_new_tokens": 512, **econfig}
    kept = []
    workflow = adapter.Tau2Workflow(values, tokenizer="local:chatml", on_trajectory=kept.append)
    return workflow, kept


def _row(task, domain="airline"):
    return {"domain": domain, "split": get_domain(domain).default_split(), "task_id": task.id}


def test_tensors_follow_the_engine_token_for_token(tiny) -> None:
    _, engine = tiny
    workflow, kept = _workflow(domain="mock", temperature=0.7)
    assert isinstance(workflow, RolloutWorkflow)
    recording = Recording(engine)
    out = asyncio.run(workflow.arun_episode(recording, _row(_tasks("mock", 1)[0], "mock")))
    assert out is not None, kept[0].error
    length = out["input_ids"].shape[1]
    expected = {
        "input_ids": "int32",
        "logprobs": "float32",
        "loss_mask": "int32",
        "versions": "int32",
        "attention_mask": "bool",
    }
    for key, dtype in expected.items():
        assert tuple(out[key].shape) == (1, length) and str(out[key].dtype) == f"torch.{dtype}"
    assert tuple(out["rewards"].shape) == (1,) and str(out["rewards"].dtype) == "torch.float32"
    assert out["attention_mask"].all()
    # The sampled tokens, in order, are exactly what AReaL's engine returned; nothing else is.
    sampled = out["loss_mask"][0].bool()
    sent = [t for r in recording.responses for t in r.output_tokens]
    logprobs = [x for r in recording.responses for x in r.output_logprobs]
    assert len(recording.responses) >= 2 and all(x < 0.0 for x in logprobs)
    assert kept[0].reward == 1.0 and float(out["rewards"][0]) == 1.0
    assert out["input_ids"][0][sampled].tolist() == sent
    assert out["logprobs"][0][sampled].tolist() == pytest.approx(logprobs, abs=1e-6)
    assert not out["logprobs"][0][~sampled].any()
    versions = [v for r in recording.responses for v in r.output_versions]
    assert out["versions"][0][sampled].tolist() == versions
    assert (out["versions"][0][~sampled] == -1).all()
    # Each call's prompt is the episode so far: the kept ids up to that turn.
    ids = out["input_ids"][0].tolist()
    for response in recording.responses:
        start = len(response.input_tokens)
        assert ids[:start] == response.input_tokens
        assert ids[start : start + len(response.output_tokens)] == response.output_tokens
    assert kept[0].transcript.ids.tolist() == ids


def test_seeded_oracle_episode_matches_the_core_rollout(oracle) -> None:
    server, engine, tasks = oracle
    task = tasks[0]
    config = EpisodeConfig.build(
        domain="airline", policy="sglang:x", tokenizer="local:chatml", max_new_tokens=512
    )
    core = asyncio.run(rollout(task, config, policy=TokenPolicy(server.url, config), split="test"))
    workflow, kept = _workflow()
    out = asyncio.run(workflow.arun_episode(engine, {**_row(task), "trial": 0}))
    ours = kept[0]
    assert core.status == "completed" and core.reward == 1.0
    assert ours.reward == core.reward and float(out["rewards"][0]) == core.reward
    assert out["input_ids"][0].tolist() == core.transcript.ids.tolist()

    def dump(messages):
        return [m.model_dump(mode="json", exclude={"timestamp"}) for m in messages]

    assert dump(ours.messages) == dump(core.messages)


def test_individual_export_one_row_per_model_turn(oracle) -> None:
    _, engine, tasks = oracle
    workflow, kept = _workflow(export_style="individual", turn_discount=0.5)
    recording = Recording(engine)
    out = asyncio.run(workflow.arun_episode(recording, _row(tasks[0])))
    turns = len(recording.responses)
    assert kept[0].reward == 1.0 and turns >= 3
    assert out["input_ids"].shape[0] == turns
    assert out["loss_mask"].sum(dim=1).tolist() == [
        len(r.output_tokens) for r in recording.responses
    ]
    # AReaL's individual style: the last turn has the reward, each earlier one half the next.
    assert out["rewards"].tolist() == [0.5 ** (turns - 1 - k) for k in range(turns)]
    for k, response in enumerate(recording.responses):
        end = len(response.input_tokens) + len(response.output_tokens)
        assert out["attention_mask"][k].sum() == end
        assert out["input_ids"][k, :end].tolist() == response.input_tokens + response.output_tokens


def test_failed_and_removed_episodes_are_rejected_with_none(oracle) -> None:
    server, engine, tasks = oracle
    calls = {"n": 0}

    def persistent(endpoint, body):
        calls["n"] += 1
        return Fault("status", status=503) if calls["n"] >= 2 else None

    server.fault_policy = persistent
    workflow, kept = _workflow()
    assert asyncio.run(workflow.arun_episode(engine, _row(tasks[0]))) is None
    assert kept[0].status == "failed" and kept[0].reward == 0.0
    server.fault_policy = None
    # A malformed tool call: trained on (observe), or dropped (remove).
    template = load_template("local:chatml")
    garbled = [*template.encode('<tool_call>\n{"name": oops}\n</tool_call>'), template.eot_id]
    bad = LoopbackEngine(template.tokenizer, canned=lambda ids, body: garbled).start()
    bad_engine = _areal_engine(bad)
    try:
        for mode, rejected in (("observe", False), ("remove", True)):
            workflow, kept = _workflow(on_malformed=mode, max_steps=6)
            out = asyncio.run(workflow.arun_episode(bad_engine, _row(tasks[0])))
            assert kept[0].counts["rejected_turns"] >= 1
            assert (out is None) is rejected, mode
    finally:
        bad_engine.destroy()
        bad.stop()


def test_two_hundred_episodes_with_injected_faults_raise_nothing(oracle) -> None:
    server, engine, tasks = oracle
    mock = [t for t in tasks if t in _tasks("mock", 4)]
    rng = random.Random(7)
    kinds = [
        Fault("status", status=500),
        Fault("status", status=503),
        Fault("drop"),
        Fault("malformed"),
        Fault("abort"),
    ]

    def faults(endpoint, body):
        return rng.choice(kinds) if rng.random() < 0.2 else None

    def user(body):
        system = body["messages"][0]["content"]
        task = next(t for t in mock if opening_message(t) in system)
        first = not any(m["role"] == "assistant" for m in body["messages"])  # roles are flipped
        return {"role": "assistant", "content": opening_message(task) if first else "Thanks."}

    server.fault_policy = faults
    server.chat_responder = user
    workflow, kept = _workflow(
        domain="mock",
        user="openai",
        user_model="tiny",
        user_api_base=f"{server.url}/v1",
        user_attempts=2,
        request_attempts=2,
    )

    async def run_all():
        limit = asyncio.Semaphore(32)

        async def one(i):
            async with limit:
                return await workflow.arun_episode(engine, _row(mock[i % len(mock)], "mock"))

        return await asyncio.gather(*[one(i) for i in range(200)])

    results = asyncio.run(run_all())
    kept_results = [r for r in results if r is not None]
    assert len(results) == 200 and len(kept) == 200
    assert 0 < len(kept_results) < 200
    statuses = {t.status for t in kept}
    assert "failed" in statuses and "completed" in statuses
    # Exactly the failed and aborted episodes are rejected; the rest train.
    dropped = [t for t in kept if t.status in ("failed", "aborted")]
    assert sum(r is None for r in results) == len(dropped)
    for result in kept_results:
        assert result["input_ids"].shape == result["loss_mask"].shape
        assert result["rewards"].dtype.is_floating_point


def _agent_responder(body):
    return {"role": "assistant", "content": "Thank you for calling. ###STOP###"}


def test_agent_mode_inline_returns_a_float(oracle) -> None:
    server, _, tasks = oracle
    server.chat_responder = _agent_responder
    agent = adapter.Tau2Agent({"domain": "airline", "max_steps": 10}, {"temperature": 0.7})
    reward = asyncio.run(agent.run(_row(tasks[0]), base_url=f"{server.url}/v1", api_key="k"))
    assert type(reward) is float
    # Broken setups and bad rows come back as None (AReaL rejects the sample), never raised.
    assert asyncio.run(agent.run({"nothing": 1}, base_url=f"{server.url}/v1")) is None
    server.fault_policy = lambda endpoint, body: Fault("status", status=503)
    assert asyncio.run(agent.run(_row(tasks[0]), base_url=f"{server.url}/v1")) is None


def test_agent_mode_subprocess_pickles_and_reads_openai_env(oracle) -> None:
    from areal.experimental.openai.proxy.workflow import _wrap_run

    server, _, tasks = oracle
    server.chat_responder = _agent_responder
    agent = adapter.Tau2Agent({"domain": "airline", "max_steps": 10})
    copy = pickle.loads(pickle.dumps(agent))
    assert copy.config == agent.config
    envs = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": "session-key"}
    before = server.requests["chat"]
    asyncio.run(run_cpu(int))  # the parent's CPU pool is running when AReaL forks its workers
    pool = ProcessPoolExecutor(max_workers=1)  # forks, like AReaL's own subprocess pool
    try:
        reward = pool.submit(_wrap_run, agent, _row(tasks[0]), envs).result(timeout=60)
    finally:  # a hung child must fail the test, not hang it
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
    assert type(reward) is float
    assert server.requests["chat"] > before


def test_config_from_areal_tau2_example_names() -> None:
    econfig = {
        "domain": "retail",
        "max_steps": 50,
        "solo_mode": False,
        "add_thinking_tool": False,
        "user_llm_base_url": "http://localhost:8000/v1/",
        "user_llm": "openai/self-hosted-Qwen2.5-72B",
        "user_llm_args": {"temperature": 0.0, "max_completion_tokens": 512, "top_p": 0.9},
        "turn_discount": 0.9,
        "invalid_format_penalty": 0.1,
    }
    gconfig = GenerationHyperparameters(temperature=0.8, max_new_tokens=2048, max_tokens=16384)
    config, options = adapter.config_from_econfig(
        econfig, gconfig=gconfig, tokenizer="local:chatml"
    )
    assert (config.domain, config.max_steps, config.user) == ("retail", 50, "openai")
    assert config.user_model == "self-hosted-Qwen2.5-72B"
    assert config.user_api_base == "http://localhost:8000/v1/"
    assert (config.user_temperature, config.user_max_tokens) == (0.0, 512)
    assert config.user_extra_body == {"top_p": 0.9}
    assert (config.temperature, config.max_new_tokens, config.max_context_tokens) == (
        0.8,
        2048,
        16384,
    )
    assert (options.turn_discount, options.invalid_format_penalty) == (0.9, 0.1)
    litellm_user, _ = adapter.config_from_econfig(
        {"user_llm": "anthropic/claude-x"}, tokenizer="local:chatml"
    )
    assert (litellm_user.user, litellm_user.user_model) == ("litellm", "anthropic/claude-x")
    # AReaL's solo_mode and add_thinking_tool are accepted under their own names...
    solo, _ = adapter.config_from_econfig(
        {"domain": "telecom", "solo_mode": True, "add_thinking_tool": True},
        tokenizer="local:chatml",
    )
    assert (solo.solo_mode, solo.add_thinking_tool) == (True, True)
    # ...and a domain tau2 has no solo mode for fails at start-up, with tau2's reason.
    with pytest.raises(ConfigError, match="does not support solo mode"):
        adapter.config_from_econfig(
            {"domain": "airline", "solo_mode": True}, tokenizer="local:chatml"
        )
    with pytest.raises(ConfigError, match="tokenizer_path"):
        adapter.config_from_econfig({"domain": "airline"})
    with pytest.raises(ConfigError, match="unknown setting 'max_stepz'"):
        adapter.config_from_econfig({"max_stepz": 3}, tokenizer="local:chatml")


def test_recipe_config_builds_an_episode_config() -> None:
    from omegaconf import OmegaConf

    raw = OmegaConf.load(RECIPE / "config_qwen3_tau2.yaml")
    econfig = OmegaConf.to_container(raw.econfig, resolve=False)
    gconfig = OmegaConf.to_container(raw.gconfig, resolve=False)
    config, options = adapter.config_from_econfig(
        econfig, gconfig=gconfig, tokenizer="local:chatml"
    )
    assert config.user == "openai" and config.user_api_base and options.export_style == "concat"


def test_areal_workflow_executor_runs_the_workflow(oracle) -> None:
    """AReaL's own WorkflowExecutor (rollout_batch, with its trajectory format check) drives the
    workflow by import path, as its trainer does; a group comes back normalised in one piece."""
    server, _, tasks = oracle
    engine = _areal_engine(
        server, check_trajectory_format=True, consumer_batch_size=2, max_concurrent_rollouts=4
    )
    try:
        rows = [_row(t) for t in tasks[:2]]
        kwargs = {
            "econfig": {"domain": "airline", "max_new_tokens": 512},
            "tokenizer": "local:chatml",
        }
        batch = engine.rollout_batch(
            rows, workflow="tau_adapters.areal.Tau2Workflow", workflow_kwargs=kwargs
        )
        assert [b["rewards"].tolist() for b in batch] == [[1.0], [1.0]]
        engine.set_version(1)  # a training step: AReaL's staleness control admits the next batch
        kwargs["econfig"] = {**kwargs["econfig"], "group_size": 3}
        batch = engine.rollout_batch(rows, workflow=adapter.Tau2Workflow, workflow_kwargs=kwargs)
        # Three oracle episodes per task, all 1.0: each normalised against its group gives 0.
        assert [b["rewards"].tolist() for b in batch] == [[0.0] * 3, [0.0] * 3]
        assert all(int(b["versions"].max()) == 1 for b in batch)
    finally:
        engine.destroy()


def test_group_normalisation_leaves_removed_episodes_out(oracle) -> None:
    _, engine, tasks = oracle

    class FailSecondEpisode(Recording):
        """AReaL's engine, failing every call of the second episode to ask (by its rid)."""

        def __init__(self, engine):
            super().__init__(engine)
            self.rids: list[str] = []

        async def agenerate(self, request):
            if request.rid not in self.rids:
                self.rids.append(request.rid)
            if self.rids.index(request.rid) == 1:
                raise RuntimeError("engine down for this episode")
            return await super().agenerate(request)

    workflow, kept = _workflow(group_size=3, group_std=False)
    out = asyncio.run(workflow.arun_episode(FailSecondEpisode(engine), _row(tasks[0])))
    statuses = sorted(t.status for t in kept)
    assert statuses == ["completed", "completed", "failed"], [t.error for t in kept]
    # Two kept episodes, both 1.0: mean-centred they are 0. Were the failed episode counted as a
    # 0.0 in the group, the mean would be 2/3 and each kept value 1/3.
    assert out["rewards"].tolist() == [0.0, 0.0]


def test_areal_n_samples_group_members_get_their_own_trials_and_seeds(oracle) -> None:
    """AReaL's own grouping (gconfig.n_samples): its GroupedRolloutWorkflow calls arun_episode
    n times with one row object and no index. Each member must still run its own trial, with
    user seed ``econfig.seed + trial`` as `econfig.group_size` members do, and AReaL's stats say
    which member each episode was (``group_member``)."""
    from areal.utils import stats_tracker

    server, _, tasks = oracle
    engine = _areal_engine(server, consumer_batch_size=2, max_concurrent_rollouts=8)
    seen: list = []
    kwargs = {
        "econfig": {"domain": "airline", "max_new_tokens": 512, "seed": 100},
        "gconfig": {"n_samples": 4},
        "tokenizer": "local:chatml",
        "on_trajectory": seen.append,
    }
    tracker = stats_tracker.get("rollout")
    tracker.export()  # start from empty stats
    try:
        rows = [_row(t) for t in tasks[:2]]
        # By import path, as the trainer passes it: one workflow instance per submitted row.
        batch = engine.rollout_batch(
            rows, workflow="tau_adapters.areal.Tau2Workflow", workflow_kwargs=kwargs, group_size=4
        )
        assert [b["rewards"].tolist() for b in batch] == [[1.0] * 4, [1.0] * 4]
        by_task: dict[str, list[tuple[int, int]]] = {}
        for t in seen:
            by_task.setdefault(t.task_id, []).append((t.trial, t.seed))
        # Hand computation: member k of a row with trial 0 runs trial k, seed 100 + k.
        expected = [(k, 100 + k) for k in range(4)]
        assert {task: sorted(runs) for task, runs in by_task.items()} == {
            t.id: expected for t in tasks[:2]
        }
        members = sorted(tracker.stats["rollout/group_member"])
        assert members == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
        # One shared instance, two groups of the same row at once: AReaL's task id keeps the two
        # groups apart, so each still has members 0..3 (and nothing is left in the table).
        seen.clear()
        engine.set_version(1)
        shared = adapter.Tau2Workflow(**kwargs)
        engine.rollout_batch([rows[0], dict(rows[0])], workflow=shared, group_size=4)
        assert sorted(t.trial for t in seen) == [0, 0, 1, 1, 2, 2, 3, 3]
        assert len(shared.members) == 0
    finally:
        tracker.export()
        engine.destroy()


class Fates(Recording):
    """AReaL's engine, giving the n-th episode that asks (by its rid) the n-th fate:
    ``ok`` (the oracle's answer), ``truncated`` (AReaL's engine asked for one new token only,
    so the turn ends at its length: a kept episode with reward 0), ``deadline`` (never answers:
    the workflow's ``timeout`` aborts it) and ``cancelled`` (AReaL's request is cancelled)."""

    def __init__(self, engine, fates):
        super().__init__(engine)
        self.fates = fates
        self.rids: list[str] = []
        self.fate_of: dict[str, str] = {}

    async def agenerate(self, request):
        from dataclasses import replace

        if request.rid not in self.rids:
            self.rids.append(request.rid)
            self.fate_of[request.rid] = self.fates[len(self.rids) - 1]
        fate = self.fate_of[request.rid]
        if fate == "deadline":
            await asyncio.sleep(120)
        if fate == "cancelled":
            raise asyncio.CancelledError()
        if fate == "truncated":
            request = replace(request, gconfig=request.gconfig.new(max_new_tokens=1))
        return await super().agenerate(request)


@pytest.mark.parametrize("group_std", [True, False])
def test_group_rewards_stay_with_their_runs_and_aborted_episodes_train_nothing(
    oracle, group_std
) -> None:
    """econfig.group_size: 4 members; one completes (tau2 reward 1), one is cut at its length
    (kept, reward 0), one runs past the deadline and one is cancelled (both aborted: AReaL cannot
    retry a sample, so they train nothing and count in no group statistic). Each row AReaL gets
    must carry the normalised reward of the run whose tokens it holds."""
    import math

    _, engine, tasks = oracle
    # Fates go by arrival order, which the event loop decides: run again (at most 5 times) until
    # a removed member comes before a kept one, so that a shift of rewards would show.
    for _attempt in range(5):
        fates = Fates(engine, ["ok", "deadline", "truncated", "cancelled"])
        workflow, kept = _workflow(group_size=4, group_std=group_std, timeout=3)
        out = asyncio.run(workflow.arun_episode(fates, _row(tasks[0])))
        by_trial = {t.trial: t for t in kept}
        if any(
            by_trial[a].status == "aborted" and by_trial[b].status != "aborted"
            for a in by_trial
            for b in by_trial
            if a < b
        ):
            break
    assert sorted(by_trial) == [0, 1, 2, 3]
    statuses = sorted(t.status for t in kept)
    assert statuses == ["aborted", "aborted", "completed", "truncated"], [t.error for t in kept]
    # Hand computation over the two kept runs, tau2's rewards 1.0 and 0.0: mean 0.5, sample
    # std sqrt(((1 - .5)^2 + (0 - .5)^2) / 1); eps 1e-6 as in AReaL's and our normalisation.
    std = math.sqrt(((1.0 - 0.5) ** 2 + (0.0 - 0.5) ** 2) / 1)
    scale = (std + 1e-6) if group_std else 1.0
    expected = {"completed": 0.5 / scale, "truncated": -0.5 / scale}
    assert [t.reward for t in kept if t.status == "completed"] == [1.0]
    assert [t.reward for t in kept if t.status == "truncated"] == [0.0]
    rows = out["input_ids"].shape[0]
    assert rows == 2  # the aborted ones are not there
    for i in range(rows):
        ids = out["input_ids"][i, : int(out["attention_mask"][i].sum())].tolist()
        [run] = [t for t in kept if t.transcript is not None and t.transcript.ids.tolist() == ids]
        assert out["rewards"][i].item() == pytest.approx(expected[run.status], abs=1e-6)
    # The setup really put a removed member before a kept one (so a shift would show).
    assert any(
        by_trial[a].status == "aborted" and by_trial[b].status != "aborted"
        for a in by_trial
        for b in by_trial
        if a < b
    )


@pytest.mark.parametrize("fate", ["deadline", "cancelled"])
def test_an_aborted_episode_alone_trains_nothing(oracle, fate) -> None:
    _, engine, tasks = oracle
    workflow, kept = _workflow(timeout=3)
    out = asyncio.run(workflow.arun_episode(Fates(engine, [fate]), _row(tasks[0])))
    assert out is None
    assert kept[0].status == "aborted" and kept[0].transcript is not None


def test_per_turn_token_budget_reaches_the_engine_request(oracle) -> None:
    """gconfig.max_new_tokens (per turn) and gconfig.max_tokens (the context) bound every
    request that AReaL's client puts on the wire: SGLang's ``sampling_params.max_new_tokens``
    is min(per-turn, context - prompt - 1), the 1 kept for the end-of-turn token."""
    server, engine, tasks = oracle
    sent: list[tuple[int, int]] = []

    def note(endpoint, body):
        if endpoint == "generate":
            sent.append((len(body["input_ids"]), int(body["sampling_params"]["max_new_tokens"])))
        return None

    server.fault_policy = note
    per_turn = 64
    kept: list = []
    # First without a context limit: every request gets the per-turn budget; the prompts' lengths.
    workflow = adapter.Tau2Workflow(
        {"domain": "airline"},
        gconfig={"max_new_tokens": per_turn},
        tokenizer="local:chatml",
        on_trajectory=kept.append,
    )
    asyncio.run(workflow.arun_episode(engine, _row(tasks[0])))
    assert len(sent) >= 3 and all(budget == per_turn for _, budget in sent)
    # A context that leaves the third turn fewer than per_turn tokens.
    context = sent[2][0] + 20
    sent.clear()
    workflow = adapter.Tau2Workflow(
        {"domain": "airline"},
        gconfig={"max_new_tokens": per_turn, "max_tokens": context},
        tokenizer="local:chatml",
        on_trajectory=kept.append,
    )
    asyncio.run(workflow.arun_episode(engine, _row(tasks[0])))
    assert sent, "no request reached the engine"
    for prompt, budget in sent:
        assert budget == min(per_turn, context - prompt - 1), (prompt, budget)
    assert any(budget < per_turn for _, budget in sent)
