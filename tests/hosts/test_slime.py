"""The slime adapter through slime's contract: ``generate(args, sample, sampling_params,
evaluation)`` and ``reward_post_process(args, samples)``, against a real HTTP engine on loopback.

slime is not on PyPI: these tests use the real slime when it is importable, else a stand-in with
slime's `Sample` attribute names and status enum (tests/slime_standin, from THUDM/slime commit
624b824a898ab0ec1fcb4d373004c7f3852bf515)."""

from __future__ import annotations

import asyncio
import json
import statistics

import pytest

from slime_helpers import OracleEngine, slime_args, use_slime

from conftest import requires_tau2

pytest.importorskip("transformers", reason="the slime adapter's tests need the testing extra")

pytestmark = requires_tau2
WHICH = use_slime()

import tau_adapters.slime as adapter  # noqa: E402
from slime.utils.types import Sample  # noqa: E402

from tau_adapters.agents.token_policy import load_template  # noqa: E402
from tau_adapters.cli.main import main  # noqa: E402
from tau_adapters.domains import get_domain  # noqa: E402
from tau_adapters.testing import Fault, LoopbackEngine, LoopbackRouter  # noqa: E402

GROUP = 4


@pytest.fixture(scope="module")
def tasks():
    return [
        t for t in get_domain("airline").tasks("test") if len(t.evaluation_criteria.actions) >= 2
    ][:2]


@pytest.fixture(scope="module")
def engine(tasks):
    template = load_template("local:chatml")
    server = LoopbackEngine(template.tokenizer, canned=OracleEngine(template, tasks)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def router(engine):
    """slime's router: ThunderAgent's protocol (tool_improve, --enable-slime-adapter) in front."""
    server = LoopbackRouter(engine.url, build="tool_improve").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def env(monkeypatch, engine):
    monkeypatch.setenv("TAU_ADAPTERS_THUNDERAGENT", "1")
    monkeypatch.setenv("TAU_ADAPTERS_MAX_NEW_TOKENS", "512")
    engine.fault_policy = None
    adapter.adapter._configs.clear()
    yield
    engine.fault_policy = None


def _samples(tasks, group=GROUP):
    samples = []
    for g, task in enumerate(tasks):
        row = {
            "input": f"airline/test/{task.id}",
            "metadata": {"domain": "airline", "split": "test", "task_id": task.id},
        }
        for i in range(group):
            samples.append(
                Sample(
                    group_index=g,
                    index=g * group + i,
                    prompt=row["input"],
                    metadata=dict(row["metadata"]),
                )
            )
    return samples


def _sampling(i, **changes):
    params = {
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": -1,
        "max_new_tokens": 4096,
        "sampling_seed": i,
        "skip_special_tokens": False,
        "no_stop_trim": True,
    }
    params.update(changes)
    return params


def _run(args, samples, **changes):
    async def go():
        return await asyncio.gather(
            *(adapter.generate(args, s, _sampling(s.index, **changes)) for s in samples)
        )

    return asyncio.run(go())


def _check_lengths(sample):
    assert isinstance(sample.status, Sample.Status)
    assert len(sample.loss_mask) == sample.response_length == len(sample.rollout_log_probs)
    assert len(sample.tokens) == sample.metadata["prompt_tokens"] + sample.response_length
    json.dumps(sample.metadata)


def test_group_through_generate_and_reward_post_process(engine, router, tasks) -> None:
    args = slime_args(router)
    # What the engine itself sent back, per sample (each sample has its own sampling_seed).
    produced: dict[int, int] = {}
    canned = engine.canned

    def counting(input_ids, body):
        ids = canned(input_ids, body)
        params = body.get("sampling_params") or {}
        seed = int(params.get("sampling_seed") or 0)
        produced[seed] = produced.get(seed, 0) + min(len(ids), int(params["max_new_tokens"]))
        return ids

    engine.canned = counting
    try:
        samples = _run(args, _samples(tasks))
    finally:
        engine.canned = canned
    for sample in samples:
        _check_lengths(sample)
        assert sample.status == Sample.Status.COMPLETED
        expected = 1.0 if sample.index % 2 == 0 else 0.0  # odd seeds skip a write
        assert sample.reward == expected == sample.metadata["raw_reward"]
        assert sample.metadata["reward_info"]["reward"] == expected
        assert sample.metadata["termination_reason"] == "user_stop"
        assert sum(sample.loss_mask) == produced[sample.index] > 0
        assert sample.metadata["sampled_tokens"] == produced[sample.index]
        assert router.released[sample.metadata["episode_id"]] == 1
        assert sample.metadata["program_released"] == 1
    rewards, normalized = adapter.reward_post_process(args, samples)
    assert rewards == [s.reward for s in samples]
    for g in range(len(tasks)):
        group = normalized[g * GROUP : (g + 1) * GROUP]
        assert statistics.mean(group) == pytest.approx(0.0, abs=1e-6)
        assert group[0] > 0 > group[1]
    assert all(s.metadata["raw_reward"] == s.reward for s in samples)


def test_removed_samples_are_left_out_of_group_statistics(engine, router, tasks) -> None:
    args = slime_args(router)
    samples = _samples(tasks[:1])
    failing = samples[2].index  # an even seed: would have scored 1.0

    calls = {}

    def fail_one(endpoint, body):
        if endpoint == "generate" and body["sampling_params"].get("sampling_seed") == failing:
            calls["n"] = calls.get("n", 0) + 1
            return Fault("status", status=503)
        return None

    engine.fault_policy = fail_one
    out = _run(args, samples)
    removed = out[2]
    assert removed.status == Sample.Status.FAILED and removed.remove_sample
    assert removed.loss_mask == [0] * removed.response_length
    assert "503" in removed.metadata["error"]
    assert router.released[removed.metadata["episode_id"]] == 1
    rewards, normalized = adapter.reward_post_process(args, out)
    assert normalized[2] == 0.0
    kept = [rewards[i] for i in (0, 1, 3)]  # 1, 0, 0
    mean, std = statistics.mean(kept), statistics.stdev(kept)
    for i in (0, 1, 3):
        assert normalized[i] == pytest.approx((rewards[i] - mean) / (std + 1e-6))


def test_abort_comes_back_aborted_and_a_retry_starts_fresh(engine, router, tasks) -> None:
    args = slime_args(router)
    sample = _samples(tasks[:1], group=1)[0]
    engine.fault_policy = lambda endpoint, body: Fault("abort") if endpoint == "generate" else None
    (aborted,) = _run(args, [sample])
    assert aborted.status == Sample.Status.ABORTED
    _check_lengths(aborted)
    assert router.released[aborted.metadata["episode_id"]] == 1
    engine.fault_policy = None
    (again,) = _run(args, [aborted])
    assert again.status == Sample.Status.COMPLETED and again.reward == 1.0
    _check_lengths(again)


def test_cancelled_sample_returns_aborted(engine, router, tasks) -> None:
    args = slime_args(router)
    sample = _samples(tasks[:1], group=1)[0]
    engine.fault_policy = lambda e, b: Fault("delay", seconds=5.0) if e == "generate" else None

    async def go():
        task = asyncio.ensure_future(adapter.generate(args, sample, _sampling(0)))
        await asyncio.sleep(0.5)
        task.cancel()
        return await task

    result = asyncio.run(go())
    assert result.status == Sample.Status.ABORTED
    assert router.released[result.metadata["episode_id"]] == 1


def test_response_budget_gives_truncated(engine, router, tasks) -> None:
    args = slime_args(router)
    samples = _run(args, _samples(tasks[:1], group=2), max_new_tokens=60)
    for sample in samples:
        assert sample.status == Sample.Status.TRUNCATED
        assert 0 < sample.response_length <= 60
        _check_lengths(sample)
        assert sample.reward == 0.0


def test_context_limit_from_slime_args(router, tasks) -> None:
    full = _run(slime_args(router), _samples(tasks[:1], group=1))[0]
    limit = full.metadata["prompt_tokens"] + 40
    adapter.adapter._configs.clear()
    (sample,) = _run(
        slime_args(router, rollout_max_context_len=limit), _samples(tasks[:1], group=1)
    )
    assert sample.status == Sample.Status.TRUNCATED and len(sample.tokens) <= limit


def test_partial_shaping_in_post_process_keeps_raw_reward(
    engine, router, tasks, monkeypatch
) -> None:
    monkeypatch.setenv("TAU_ADAPTERS_REWARD", "partial")
    args = slime_args(router)
    samples = _run(args, _samples(tasks[:1]))
    rewards, _ = adapter.reward_post_process(args, samples)
    for sample, shaped in zip(samples, rewards, strict=True):
        assert sample.metadata["raw_reward"] == sample.reward
        assert sample.metadata["shaped_reward"] == shaped
        if sample.reward == 1.0:
            assert shaped == pytest.approx(1.25)
        else:
            assert 0.0 < shaped < 0.25


def test_top_p_replay_spans_line_up_with_the_response(engine, router, tasks) -> None:
    args = slime_args(router)
    samples = _run(
        args,
        _samples(tasks[:1], group=2),
        top_p=0.9,
        custom_params={"return_top_p_token_ids": True},
    )
    for sample in samples:
        assert sample.status == Sample.Status.COMPLETED
        offsets, kept = sample.rollout_top_p_token_offsets, sample.rollout_top_p_token_ids
        assert len(offsets) == sample.response_length + 1 and offsets[0] == 0
        assert offsets[-1] == len(kept) == sum(sample.loss_mask)
        response = sample.tokens[-sample.response_length :]
        for i, (mask, token) in enumerate(zip(sample.loss_mask, response, strict=True)):
            span = kept[offsets[i] : offsets[i + 1]]
            assert span == ([token] if mask else [])  # the stand-in engine keeps the token itself


def test_reward_func_for_evaluation(engine, router, tasks) -> None:
    args = slime_args(router)
    samples = _run(args, _samples(tasks[:1], group=2))
    assert asyncio.run(adapter.reward_func(args, samples)) == [1.0, 0.0]


def test_bad_task_reference_fails_loudly(engine, router) -> None:
    from tau_adapters.errors import ConfigError

    args = slime_args(router)
    with pytest.raises(ConfigError, match="tasks export --format slime"):
        _run(args, [Sample(index=0, prompt="hello", metadata={})])


def test_export_slime_rows(tmp_path) -> None:
    out = tmp_path / "train.jsonl"
    assert (
        main(
            [
                "tasks",
                "export",
                "--domain",
                "airline",
                "--split",
                "train",
                "--format",
                "slime",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30
    sample = Sample(prompt=rows[0]["input"], metadata=rows[0]["metadata"])
    ref = adapter.task_ref_from_sample(sample)
    assert (ref.domain, ref.split) == ("airline", "train") and ref.task_id == rows[0]["metadata"][
        "task_id"
    ]
    assert adapter.task_ref_from_sample(Sample(prompt=rows[0]["input"])) == ref


def test_top_p_data_in_sglang_base64_form() -> None:
    import base64
    from array import array

    from tau_adapters.agents.engines import Generation
    from tau_adapters.errors import EndpointError

    def b64(values):
        return base64.b64encode(array("i", values).tobytes()).decode("ascii")

    generation = Generation(
        ids=[5, 9],
        logprobs=[-0.1, -0.2],
        finish_reason="stop",
        meta={"top_p_kept_token_ids": b64([5, 6, 9]), "top_p_kept_token_offsets": b64([0, 2, 3])},
    )
    assert generation.top_p_tokens() == ([5, 6, 9], [0, 2, 3])
    bad = Generation(
        ids=[5],
        logprobs=[0.0],
        finish_reason="stop",
        meta={"top_p_token_ids": [5], "top_p_token_offsets": [0, 1, 1]},
    )
    with pytest.raises(EndpointError, match="does not match"):
        bad.top_p_tokens()
    assert Generation(ids=[1], logprobs=[0.0], finish_reason="stop").top_p_tokens() is None
