"""Faults, budgets, malformed output and cancellation on the token path, against a real HTTP
engine on loopback. Every episode ends with a status and a valid transcript. (The same faults
behind a ThunderAgent router, with each program released exactly once: test_thunderagent.py.)"""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from conftest import requires_tau2

pytest.importorskip("torch", reason="token-level tests need the testing extra (torch)")

from tau_adapters.agents.token_policy import template_for
from tau_adapters.cli.main import main
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.errors import TemplateError
from tau_adapters.evaluation.run_folder import read_rows
from tau_adapters.testing import Fault, LoopbackEngine
from tau_adapters.tokens.chat_template import ChatTemplate

from token_helpers import ForcedOracle, RecordingPolicy

pytestmark = requires_tau2


@pytest.fixture(scope="module")
def engine():
    config = EpisodeConfig.build(tokenizer="local:chatml")
    server = LoopbackEngine(template_for(config).tokenizer, seed=1).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_faults(engine):
    engine.fault_policy = None
    engine.chat_responder = None
    yield
    engine.fault_policy = None
    engine.chat_responder = None


def _config(**changes) -> EpisodeConfig:
    base = {
        "domain": "airline",
        "policy": "sglang:loopback",
        "tokenizer": "local:chatml",
        "request_attempts": 3,
        "request_timeout_s": 5.0,
    }
    return EpisodeConfig.build(**{**base, **changes})


def _task(actions: int = 3):
    tasks = get_domain("airline").tasks("test")
    return next(t for t in tasks if len(t.evaluation_criteria.actions or []) >= actions)


def _faults(schedule: dict[int, Fault]):
    """Inject `schedule[n]` into the n-th /generate call (1-based)."""
    calls = {"n": 0}

    def policy(endpoint, body):
        if endpoint != "generate":
            return None
        calls["n"] += 1
        return schedule.get(calls["n"])

    return policy


def _check_transcript(trajectory) -> None:
    transcript = trajectory.transcript
    response = len(transcript.ids) - transcript.prompt_len
    assert len(transcript.loss_mask) == response == len(transcript.logprobs)
    json.dumps(trajectory.to_row())  # a well-formed row


def _run(policy, config, task=None, **kwargs):
    return asyncio.run(rollout(task or _task(), config, policy=policy, **kwargs))


def test_transient_500s_and_dropped_connections_are_retried(engine) -> None:
    engine.fault_policy = _faults(
        {
            1: Fault("status", status=500),
            3: Fault("drop"),
            4: Fault("malformed"),
            6: Fault("status", status=429),
        }
    )
    config = _config()
    policy = ForcedOracle(engine.url, config)
    trajectory = _run(policy, config)
    assert trajectory.status == "completed" and trajectory.reward == 1.0, trajectory.error
    _check_transcript(trajectory)
    assert engine.routing_keys[policy.episode_id] >= policy.generations


def test_persistent_errors_fail_the_episode_with_a_reason(engine) -> None:
    engine.fault_policy = _faults({n: Fault("status", status=503) for n in range(2, 50)})
    config = _config()
    policy = ForcedOracle(engine.url, config)
    trajectory = _run(policy, config)
    assert trajectory.status == "failed"
    assert "HTTP 503" in trajectory.error and "3 attempts" in trajectory.error
    assert trajectory.reward == 0.0
    _check_transcript(trajectory)


def test_slow_engine_times_out_but_a_tolerable_delay_does_not(engine) -> None:
    engine.fault_policy = _faults({2: Fault("delay", seconds=0.3)})
    config = _config(request_timeout_s=2.0)
    ok = _run(ForcedOracle(engine.url, config), config)
    assert ok.status == "completed" and ok.reward == 1.0
    engine.fault_policy = _faults({n: Fault("delay", seconds=1.5) for n in range(2, 50)})
    config = _config(request_timeout_s=0.4, request_attempts=2)
    policy = ForcedOracle(engine.url, config)
    slow = _run(policy, config)
    assert slow.status == "failed" and "timeout" in slow.error
    _check_transcript(slow)


def test_engine_abort_ends_the_episode_aborted(engine) -> None:
    engine.fault_policy = _faults({2: Fault("abort")})
    config = _config()
    policy = ForcedOracle(engine.url, config)
    trajectory = _run(policy, config)
    assert trajectory.status == "aborted"
    assert trajectory.reward == 0.0
    _check_transcript(trajectory)


@pytest.mark.parametrize("on_cancel", ["raise", "return"])
def test_cancellation_mid_request(engine, on_cancel) -> None:
    engine.fault_policy = _faults({n: Fault("delay", seconds=3.0) for n in range(2, 50)})
    config = _config()
    policy = ForcedOracle(engine.url, config)

    async def go():
        task = asyncio.ensure_future(rollout(_task(), config, policy=policy, on_cancel=on_cancel))
        while policy.generations < 1:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the second request is now in flight
        task.cancel()
        if on_cancel == "raise":
            with pytest.raises(asyncio.CancelledError):
                await task
            return None
        return await task

    result = asyncio.run(go())
    if on_cancel == "return":
        assert result.status == "aborted" and "cancelled" in result.error
        _check_transcript(result)


def test_response_budget_truncates_with_the_transcript_intact(engine) -> None:
    config = _config(max_response_tokens=120)
    policy = ForcedOracle(engine.url, config)
    trajectory = _run(policy, config, task=_task(actions=4))
    assert trajectory.status == "truncated"
    # Our own reason; tau2's scoring was given its max_steps, recorded in reward_info.
    assert trajectory.termination_reason == "token_budget" and trajectory.reward == 0.0
    assert trajectory.reward_info.info["tau2_termination_reason"] == "max_steps"
    transcript = trajectory.transcript
    assert 0 < transcript.response_length <= 120
    _check_transcript(trajectory)


def test_context_limit_truncates(engine) -> None:
    config = _config()
    probe = ForcedOracle(engine.url, config)
    full = _run(probe, config, task=_task(actions=4))
    limit = full.transcript.prompt_len + 80
    config = _config(max_context_tokens=limit)
    policy = ForcedOracle(engine.url, config)
    trajectory = _run(policy, config, task=_task(actions=4))
    assert trajectory.status == "truncated"
    assert len(trajectory.transcript.ids) <= limit
    _check_transcript(trajectory)


@pytest.mark.parametrize("mode", ["observe", "end", "remove"])
def test_malformed_tool_call_follows_the_configured_policy(engine, mode) -> None:
    config = _config(on_malformed=mode)
    policy = ForcedOracle(engine.url, config)
    policy.override[0] = (
        '<tool_call>\n{"name": "get_user_details", "arguments": {oops}\n</tool_call>'
    )
    trajectory = _run(policy, config)
    _check_transcript(trajectory)
    assert len(trajectory.rejected_turns) == 1
    assert "invalid JSON" in trajectory.rejected_turns[0]["error"]
    if mode == "observe":
        assert trajectory.status == "completed" and trajectory.reward == 1.0
        text = policy.template.decode(trajectory.transcript.ids)
        assert "Error: tool call 1: invalid JSON" in text
        assert trajectory.counts["rejected_turns"] == 1
    else:
        assert trajectory.status == "completed"
        assert trajectory.termination_reason == "agent_error" and trajectory.reward == 0.0
        assert trajectory.remove_sample is (mode == "remove")


def test_openai_chat_policy_is_text_level(engine) -> None:
    calls = {"n": 0}

    def responder(body):
        calls["n"] += 1
        assert body["tools"] and body["messages"][0]["role"] == "system"
        if calls["n"] == 1:
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_user_details", "arguments": "{broken"},
                    }
                ],
            }
        return {"role": "assistant", "content": "Goodbye."}

    engine.chat_responder = responder
    config = EpisodeConfig.build(domain="airline", policy=f"openai:{engine.url}/v1", model="tiny")
    trajectory = asyncio.run(rollout(_task(), config))
    assert trajectory.token_level is False and trajectory.transcript is None
    assert trajectory.status == "completed"
    assert len(trajectory.rejected_turns) == 1
    assert "transcript" not in trajectory.to_row()


def test_openai_chat_policy_against_the_model(engine) -> None:
    config = EpisodeConfig.build(
        domain="airline", policy=f"openai:{engine.url}/v1", model="tiny", max_new_tokens=16
    )
    trajectory = asyncio.run(rollout(_task(), config))
    assert trajectory.status in ("completed", "truncated")
    assert trajectory.usage["prompt_tokens"] > 0


def test_eval_cli_on_the_token_path_writes_transcripts(engine, tmp_path) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "eval",
            "--domain",
            "airline",
            "--split",
            "test",
            "--num-tasks",
            "2",
            "--policy",
            f"sglang:{engine.url}",
            "--user",
            "scripted",
            "--tokenizer",
            "local:chatml",
            "--check-tokens",
            "--max-new-tokens",
            "16",
            "--output",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    for row in read_rows(out / "trajectories.jsonl"):
        transcript = row["transcript"]
        response = len(transcript["ids"]) - transcript["prompt_len"]
        assert len(transcript["loss_mask"]) == response == len(transcript["logprobs"])
        assert row["token_level"] is True and row["token_check"]["ok"] is True
        assert row["status"] in ("completed", "truncated")


def test_eval_cli_needs_a_tokenizer_for_sglang(capsys, tmp_path) -> None:
    code = main(
        [
            "eval",
            "--domain",
            "airline",
            "--policy",
            "sglang:http://127.0.0.1:9",
            "--user",
            "scripted",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_template_without_end_of_turn_token_is_refused_by_name() -> None:
    from tau_adapters.testing import build_tokenizer

    tokenizer = copy.copy(build_tokenizer("chatml"))
    tokenizer.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    with pytest.raises(TemplateError, match=r"plain-template.*special token"):
        ChatTemplate(tokenizer, name="plain-template")


def test_freely_sampled_text_never_crashes_the_episode(engine) -> None:
    config = _config(max_new_tokens=32, temperature=1.0)
    policies = [RecordingPolicy(engine.url, config) for _ in range(4)]

    async def go():
        return await asyncio.gather(*(rollout(_task(), config, policy=p) for p in policies))

    for trajectory in asyncio.run(go()):
        assert trajectory.status in ("completed", "truncated")
        _check_transcript(trajectory)
