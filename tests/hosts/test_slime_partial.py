"""slime's ``--partial-rollout`` (issue 23), through slime's contract at THUDM/slime 624b824a
(the real slime when importable, else the stand-in in tests/slime_standin, which follows
`slime/rollout/sglang_rollout.py`: `GenerateState.aborted`, `abort()` with ``/abort_request`` and
``/v1/loads``, `generate_and_rm`, the buffer).

An aborted sample comes back to `tau_adapters.slime.generate` and resumes where it stopped: the
tokens from before the abort keep their ids, logprobs and mask (or mask 0 with
``--mask-offpolicy-in-partial-rollout``), the response budget counts both parts, and the finished
sample equals the same episode run without interruption.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from slime_helpers import OracleEngine, slime_args, use_slime

from conftest import requires_tau2

pytest.importorskip("transformers", reason="the slime adapter's tests need the testing extra")
pytest.importorskip("httpx", reason="slime's abort() talks HTTP (httpx)")

pytestmark = requires_tau2
WHICH = use_slime()

import tau_adapters.slime as adapter  # noqa: E402
from slime.rollout import sglang_rollout  # noqa: E402
from slime.rollout.data_source import RolloutDataSourceWithBuffer  # noqa: E402
from slime.utils.types import Sample  # noqa: E402

from tau_adapters.agents.token_policy import load_template  # noqa: E402
from tau_adapters.domains import get_domain  # noqa: E402
from tau_adapters.testing import Fault, Lognormal, LoopbackEngine  # noqa: E402

GenerateState = sglang_rollout.GenerateState


@pytest.fixture(scope="module")
def tasks():
    """A long airline task (most actions) and a short one (fewest, at least one)."""
    found = [t for t in get_domain("airline").tasks("test") if t.evaluation_criteria.actions]
    by_length = sorted(found, key=lambda t: (len(t.evaluation_criteria.actions), t.id))
    return [by_length[-1], by_length[0]]


@pytest.fixture(scope="module")
def engine(tasks):
    template = load_template("local:chatml")
    server = LoopbackEngine(template.tokenizer, canned=OracleEngine(template, tasks)).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def env(monkeypatch, engine):
    monkeypatch.setenv("TAU_ADAPTERS_MAX_NEW_TOKENS", "512")
    engine.fault_policy = None
    engine.latency = None
    adapter.adapter._configs.clear()
    if hasattr(GenerateState, "forget"):
        GenerateState.forget()
    else:  # the real slime: its singleton keeps one instance per process
        GenerateState._instances = {}  # type: ignore[attr-defined]
    yield
    engine.fault_policy = None
    engine.latency = None


def _args(engine, **changes):
    values = {
        "partial_rollout": True,
        "mask_offpolicy_in_partial_rollout": False,
        "custom_generate_function_path": "tau_adapters.slime.generate",
        "rollout_batch_size": 1,
        "over_sampling_batch_size": 2,
        "n_samples_per_prompt": 1,
        "sglang_server_concurrency": 64,
        "rollout_temperature": 1.0,
        "rollout_top_p": 1.0,
        "rollout_max_response_len": 32768,  # the long task's whole episode fits
    }
    values.update(changes)
    return slime_args(engine, **values)


def _sample(task, index=0):
    return Sample(
        group_index=index,
        index=index,
        prompt=f"airline/test/{task.id}",
        metadata={"domain": "airline", "split": "test", "task_id": task.id},
    )


def _params(args, seed=0):
    return {
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": args.rollout_max_response_len,
        "sampling_seed": seed,
    }


def _abort_at_request(engine, args, k: int, tokens: int = 4):
    """slime's abort landing while the k-th /generate is being answered: the engine cuts that
    answer after `tokens` tokens and GenerateState.aborted is set (as abort() does first)."""
    calls = {"n": 0}

    def policy(endpoint, body):
        if endpoint != "generate":
            return None
        calls["n"] += 1
        if calls["n"] == k:
            GenerateState(args).aborted = True
            return Fault("abort", tokens=tokens)
        return None

    engine.fault_policy = policy


async def _generate_once(args, sample, seed=0):
    return await sglang_rollout.generate_and_rm(args, sample, _params(args, seed))


def _fresh(args, sample, seed=0):
    async def go():
        out = await _generate_once(args, sample, seed)
        GenerateState(args).reset()
        return out

    return asyncio.run(go())


def test_an_aborted_sample_resumes_where_it_stopped(engine, tasks) -> None:
    args = _args(engine)
    reference = _fresh(args, _sample(tasks[0]))
    assert reference.status == Sample.Status.COMPLETED and reference.reward == 1.0
    for k in (1, 2, 4):
        _abort_at_request(engine, args, k)
        aborted = _fresh(args, _sample(tasks[0]))
        engine.fault_policy = None
        assert aborted.status == Sample.Status.ABORTED and aborted.reward is None
        assert not aborted.remove_sample
        summary = aborted.metadata["tau_suspended"]
        assert summary["where"] == "policy" and summary["partial_tokens"] == 4
        before = (
            list(aborted.tokens),
            list(aborted.loss_mask),
            list(aborted.rollout_log_probs),
            aborted.response_length,
        )
        assert before[1][-4:] == [1, 1, 1, 1]  # the cut turn's tokens are sampled tokens
        # Through the buffer: a plain-JSON round trip of the sample (Ray, to_dict/from_dict).
        aborted.metadata = json.loads(json.dumps(aborted.metadata))
        log = len(engine.generate_log)
        resumed = _fresh(args, aborted)
        # Resumed, not restarted: the first request continues the cut turn.
        continued = engine.generate_log[log]
        assert continued["input_ids"] == before[0]
        assert continued["sampling_params"]["max_new_tokens"] == 512 - 4
        assert resumed is aborted  # slime hands the same object back
        assert resumed.status == Sample.Status.COMPLETED and resumed.reward == 1.0
        n = len(before[0])
        assert resumed.tokens[:n] == before[0]
        offset = n - (len(before[0]) - before[3])  # response positions before the abort
        assert resumed.loss_mask[:offset] == before[1]
        assert resumed.rollout_log_probs[:offset] == before[2]
        assert resumed.tokens == reference.tokens
        assert resumed.loss_mask == reference.loss_mask
        assert resumed.rollout_log_probs == reference.rollout_log_probs
        assert resumed.response_length == reference.response_length
        assert "tau_snapshot" not in resumed.metadata


def test_mask_offpolicy_zeroes_what_came_before_the_abort(engine, tasks) -> None:
    args = _args(engine, mask_offpolicy_in_partial_rollout=True)
    reference = _fresh(args, _sample(tasks[0]))
    _abort_at_request(engine, args, 3)
    aborted = _fresh(args, _sample(tasks[0]))
    engine.fault_policy = None
    old = aborted.response_length
    resumed = _fresh(args, aborted)  # generate_and_rm zeroes the mask first, as slime does
    assert resumed.status == Sample.Status.COMPLETED
    assert resumed.tokens == reference.tokens
    assert resumed.loss_mask[:old] == [0] * old
    assert resumed.loss_mask[old:] == reference.loss_mask[old:]
    assert resumed.rollout_log_probs == reference.rollout_log_probs  # logprobs are kept


def test_the_response_budget_counts_both_parts(engine, tasks) -> None:
    reference = _fresh(_args(engine), _sample(tasks[0]))
    budget = reference.response_length // 2
    args = _args(engine, rollout_max_response_len=budget)
    _abort_at_request(engine, args, 2)
    aborted = _fresh(args, _sample(tasks[0]))
    engine.fault_policy = None
    assert aborted.status == Sample.Status.ABORTED and 0 < aborted.response_length < budget
    resumed = _fresh(args, aborted)
    assert resumed.status == Sample.Status.TRUNCATED
    assert resumed.response_length <= budget
    assert resumed.tokens[:-1] == reference.tokens[: len(resumed.tokens) - 1]


def test_aborted_during_a_tool_or_user_call_resumes_at_the_next_boundary(engine, tasks) -> None:
    """slime aborts SGLang requests only: a call in progress finishes and the episode stops at
    the next turn boundary; the resumed episode makes no call twice."""
    args = _args(engine)
    reference = _fresh(args, _sample(tasks[0]))
    requests = {"n": 0}

    def during_env(endpoint, body):
        if endpoint == "generate":
            requests["n"] += 1
            if requests["n"] == 2:  # the host aborts after this turn was answered
                GenerateState(args).aborted = True
        return None

    engine.fault_policy = during_env
    aborted = _fresh(args, _sample(tasks[0]))
    engine.fault_policy = None
    assert aborted.metadata["tau_suspended"]["where"] == "boundary"
    assert aborted.metadata["tau_suspended"]["partial_tokens"] == 0
    snapshot = aborted.metadata["tau_snapshot"]
    assert snapshot["session"]["counters"]["agent_turns"] == 2  # its tool call ran and is kept
    log = len(engine.generate_log)
    resumed = _fresh(args, aborted)
    assert resumed.tokens == reference.tokens and resumed.reward == 1.0
    assert len(engine.generate_log) - log == reference.metadata["turns"] - 2


def test_over_sampling_with_partial_rollout_trains_every_group_once(engine, tasks) -> None:
    """Three steps of slime's loop, B=1 group trained per step, 2 in flight, every request taking
    the same 0.15 s: a short episode and then long ones. The long episode in flight when a step
    has its group goes to the buffer through abort() and is finished in the next step (resumed,
    not restarted: it finishes before the fresh long one started beside it), with the tokens of
    an uninterrupted run."""
    args = _args(engine, over_sampling_batch_size=2)
    runs = {t.id: _fresh(args, _sample(t)) for t in tasks}
    short, long = sorted(tasks, key=lambda t: runs[t.id].metadata["turns"])
    assert runs[short.id].metadata["turns"] + 2 <= runs[long.id].metadata["turns"]
    references = {t.id: runs[t.id].tokens for t in tasks}
    engine.latency = Lognormal(median_s=0.15, sigma=0.0)
    source = RolloutDataSourceWithBuffer(args, lambda i: [_sample(short if i == 0 else long, i)])

    async def steps():
        return [await sglang_rollout.generate_rollout(args, step, source) for step in range(3)]

    trained = [group[0] for step in asyncio.run(steps()) for group in step]
    assert engine.requests["abort_request"] >= 1
    assert [s.metadata["task_id"] for s in trained] == [short.id, long.id, long.id]
    for sample in trained:
        assert sample.status == Sample.Status.COMPLETED
        assert sample.tokens == references[sample.metadata["task_id"]]
    assert "tau_suspended" not in trained[0].metadata
    for step, sample in enumerate(trained[1:]):
        assert "tau_suspended" in sample.metadata  # it was suspended once and resumed
        assert sample.metadata["start_rollout_id"] == step  # started in the step before
        assert sample.index == step + 1
    assert len(source.buffer) == 1  # the last long one waits for the next step
