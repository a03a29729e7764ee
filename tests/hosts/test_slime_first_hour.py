"""The slime points of issue 8, against the loopback engine: the response budget is a hard limit,
no sample reaches training without tokens, the group filter sees the shaped reward, and the
recipe evaluates per domain. (slime stand-in as in test_slime.py when slime is not installed.)"""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
import statistics
from pathlib import Path

import pytest

from slime_helpers import OracleEngine, slime_args, use_slime

from conftest import requires_tau2

pytest.importorskip("transformers", reason="the slime adapter's tests need the testing extra")

pytestmark = requires_tau2
WHICH = use_slime()

import tau_adapters.slime as adapter  # noqa: E402
from slime.utils.types import Sample  # noqa: E402

from tau_adapters.agents.token_policy import load_template  # noqa: E402
from tau_adapters.domains import get_domain  # noqa: E402
from tau_adapters.testing import LoopbackEngine  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "adapters" / "slime" / "run_qwen3_4b_tau2.sh"


@pytest.fixture(scope="module")
def tasks():
    return [
        t for t in get_domain("airline").tasks("test") if len(t.evaluation_criteria.actions) >= 2
    ][:1]


@pytest.fixture(scope="module")
def engine(tasks):
    template = load_template("local:chatml")
    server = LoopbackEngine(template.tokenizer, canned=OracleEngine(template, tasks)).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("TAU_ADAPTERS_MAX_NEW_TOKENS", "512")
    adapter.adapter._configs.clear()
    yield
    adapter.adapter._configs.clear()


def _sample(task, index=0):
    return Sample(
        group_index=0,
        index=index,
        prompt=f"airline/test/{task.id}",
        metadata={"domain": "airline", "split": "test", "task_id": task.id},
    )


def _generate(args, sample, max_new_tokens):
    params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": max_new_tokens}
    params["sampling_seed"] = sample.index
    return asyncio.run(adapter.generate(args, sample, params))


def _trainable(sample) -> None:
    """What slime's `_convert_samples_to_train_data` (THUDM/slime 624b824a, slime/ray/rollout.py)
    needs of a sample: a loss mask as long as the response (it asserts this), and a non-empty
    token sequence with a response part (it packs `tokens` and `response_lengths` into
    micro-batches; an empty one is a zero-length sequence)."""
    assert sample.tokens and sample.response_length >= 1
    assert len(sample.loss_mask) == sample.response_length == len(sample.rollout_log_probs)
    assert sample.response_length < len(sample.tokens)


@pytest.mark.parametrize("budget", [7, 12, 33])
def test_a_length_cut_turn_never_exceeds_the_response_budget(engine, tasks, budget) -> None:
    # The oracle's first turn is longer than these budgets, so the turn is cut for length.
    sample = _generate(slime_args(engine), _sample(tasks[0]), budget)
    assert sample.status == Sample.Status.TRUNCATED
    assert sample.response_length <= budget  # a hard limit, the end-of-turn token included
    assert sample.response_length == budget  # and all of it used
    assert sample.loss_mask[-1] == 0  # the appended end-of-turn token is not sampled
    _trainable(sample)
    meta = sample.metadata
    assert meta["termination_reason"] == "token_budget"
    assert meta["reward_info"]["info"]["tau2_termination_reason"] == "max_steps"
    assert meta["turns"] == 1  # the cut turn counts


def test_an_episode_failing_before_the_first_model_call_still_has_tokens(
    engine, tasks, monkeypatch
) -> None:
    with socket.socket() as s:  # a user simulator that is not there
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("TAU_ADAPTERS_USER", f"openai:http://127.0.0.1:{dead}/v1")
    monkeypatch.setenv("TAU2_USER_MODEL", "user-sim")
    monkeypatch.setenv("TAU_ADAPTERS_USER_ATTEMPTS", "1")
    before = engine.requests["generate"]
    sample = _generate(slime_args(engine), _sample(tasks[0]), 512)
    assert engine.requests["generate"] == before  # the model was never called
    assert sample.status == Sample.Status.FAILED
    assert sample.metadata["termination_reason"] == "user_error"
    _trainable(sample)
    assert sample.loss_mask == [0] and sample.remove_sample  # nothing to learn from it
    template = load_template("local:chatml")
    assert sample.tokens[-1] == template.eot_id
    assert f"airline/test/{tasks[0].id}" in template.decode(sample.tokens)


def _group(official, action_fractions):
    samples = []
    for i, (reward, fraction) in enumerate(zip(official, action_fractions, strict=True)):
        checks = [{"action_match": j < fraction * 4} for j in range(4)]
        info = {"reward": reward, "action_checks": checks, "reward_basis": ["DB"]}
        samples.append(
            Sample(
                group_index=0,
                index=i,
                reward=reward,
                metadata={
                    "raw_reward": reward,
                    "reward_info": info,
                    "domain": "airline",
                    "task_id": "0",
                },
            )
        )
    return samples


def _slime_keeps(args, samples) -> bool:
    """slime's own `check_reward_nonzero_std` rule (624b824a): std of the samples' reward value
    (`sample.get_reward_value(args)`, the official reward here) above 1e-6."""
    return statistics.stdev([s.get_reward_value(args) for s in samples]) > 1e-6


def _keeps(output) -> bool:
    return bool(getattr(output, "keep", output))


def test_group_filter_sees_the_shaped_reward(engine, monkeypatch) -> None:
    args = slime_args(engine)
    group = _group([0.0, 0.0, 0.0, 0.0], [0.0, 0.25, 0.5, 1.0])
    monkeypatch.setenv("TAU_ADAPTERS_REWARD", "partial")
    adapter.adapter._configs.clear()
    shaped, _ = adapter.reward_post_process(args, _group([0.0] * 4, [0.0, 0.25, 0.5, 1.0]))
    assert statistics.stdev(shaped) > 0  # training sees a signal in this all-zero group ...
    assert not _slime_keeps(args, group)  # ... that slime's official-reward filter would drop
    assert _keeps(adapter.dynamic_filter(args, group))  # ours keeps it
    same = _group([0.0] * 4, [0.5] * 4)
    assert not _keeps(adapter.dynamic_filter(args, same))  # no signal after shaping either
    monkeypatch.setenv("TAU_ADAPTERS_REWARD", "binary")
    adapter.adapter._configs.clear()
    assert not _keeps(adapter.dynamic_filter(args, group))  # binary: both filters agree
    assert _keeps(adapter.dynamic_filter(args, _group([1.0, 0.0, 0.0, 0.0], [1.0, 0, 0, 0])))


def _recipe_argv() -> list[str]:
    text = RECIPE.read_text(encoding="utf-8")
    command = text[text.index("python3 train.py") :]
    return shlex.split(command.replace("\\\n", " "), comments=True)


def test_recipe_filters_on_the_shaped_reward_and_evaluates_per_domain() -> None:
    argv = _recipe_argv()
    at = argv.index("--dynamic-sampling-filter-path")
    assert argv[at + 1] == "tau_adapters.slime.dynamic_filter"
    assert "check_reward_nonzero_std" not in " ".join(argv)
    assert "--reward-key" not in argv
    at = argv.index("--eval-prompt-data")
    values = []
    for value in argv[at + 1 :]:
        if value.startswith("--"):
            break
        values.append(value)
    pairs = dict(zip(values[::2], values[1::2], strict=True))
    assert set(pairs) == {"airline", "retail", "telecom"}
    for domain, path in pairs.items():
        assert domain in path
    text = RECIPE.read_text(encoding="utf-8")
    assert re.search(r"for domain in airline retail telecom", text)
    assert '--domain "$domain" --split test' in text


def test_slime_readme_notes() -> None:
    text = " ".join((ROOT / "adapters" / "slime" / "README.md").read_text().split())
    assert "--reward-key" in text and "unset" in text
    assert "slime's own SGLang and sglang-router builds" in text
    assert "--eval-prompt-data airline test_airline.jsonl retail" in text
    assert "tau_adapters.slime.dynamic_filter" in text
