"""The chat-completion transports shared by the user simulator and the NL-assertion judge, against
a real judge server on loopback.

The judge used to retry every litellm exception; it now follows the user transport's rule on both
paths: a 400 is the caller's mistake (http_client's ``RETRYABLE_STATUS`` leaves it out, and
litellm raises ``BadRequestError``, not one of its retryable errors), so it fails after one
request with the status kept; a 503 is retried and the next answer is used.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the loopback judge needs the testing extra")

from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import ConfigError, EndpointError
from tau_adapters.rewards.judge import JudgeError, make_judge
from tau_adapters.testing.judge import LoopbackJudge, answer_for
from tau_adapters.users.transport import make_transport

#: A prompt shaped like tau2's (the loopback judge grades the list after ``expectedOutcomes:``).
PROMPT = "Grade the conversation.\nexpectedOutcomes: ['The agent greets the user']"


def _judge_config(server: LoopbackJudge, path: str, **extra: Any) -> EpisodeConfig:
    if path == "openai":
        spec = {"judge_model": f"openai:{server.base_url}", "judge_model_name": "loopback-judge"}
    else:
        spec = {"judge_model": "litellm:openai/loopback-judge", "judge_api_base": server.base_url}
    return EpisodeConfig.build(**{**spec, "judge_attempts": 4, **extra})


@pytest.fixture(params=["openai", "litellm"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "litellm":
        pytest.importorskip("litellm", reason="litellm is not installed")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")  # litellm's openai provider wants one
        monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download
    return str(request.param)


def test_the_judge_fails_fast_on_a_request_the_endpoint_rejects(path: str) -> None:
    with LoopbackJudge(errors=[400]) as server:
        judge = make_judge(_judge_config(server, path))
        assert judge is not None
        with pytest.raises(JudgeError) as caught:
            asyncio.run(judge.complete([{"role": "user", "content": PROMPT}]))
    assert len(server.requests) == 1  # 4 attempts allowed, none spent on a 400
    assert caught.value.status == 400
    assert str(caught.value).startswith("judge")
    assert judge.usage["calls"] == 0


def test_the_judge_retries_an_unavailable_endpoint_then_uses_its_answer(path: str) -> None:
    with LoopbackJudge(errors=[503], verdict=True) as server:
        judge = make_judge(_judge_config(server, path))
        assert judge is not None
        reply = asyncio.run(judge.complete([{"role": "user", "content": PROMPT}]))
    assert len(server.requests) == 2
    assert reply == answer_for(PROMPT, True)
    assert judge.usage["calls"] == 1


def test_the_judge_gives_up_after_its_attempts_naming_itself() -> None:
    with LoopbackJudge(mode="down") as server:
        judge = make_judge(_judge_config(server, "openai", judge_attempts=2))
        assert judge is not None
        with pytest.raises(JudgeError, match=r"^judge endpoint: HTTP 503 .*gave up after 2"):
            asyncio.run(judge.complete([{"role": "user", "content": PROMPT}]))
    assert len(server.requests) == 2


def test_the_user_transport_names_the_user_simulator_and_raises_endpoint_error() -> None:
    with LoopbackJudge(errors=[400]) as server:
        config = EpisodeConfig.build(user_model="loopback-user", user_attempts=4)
        transport = make_transport("openai", server.base_url, config)
        with pytest.raises(EndpointError) as caught:
            asyncio.run(transport.complete({"messages": [{"role": "user", "content": "hi"}]}))
    assert not isinstance(caught.value, JudgeError)
    assert str(caught.value).startswith("user simulator endpoint: HTTP 400")
    assert caught.value.status == 400 and len(server.requests) == 1


def test_missing_settings_name_each_sides_own_flags() -> None:
    with pytest.raises(ConfigError) as user:
        make_transport("openai", "http://127.0.0.1:9/v1", EpisodeConfig.build())
    assert "--user openai:URL" in str(user.value) and "--user-model NAME" in str(user.value)
    assert "--judge" not in str(user.value)
    with pytest.raises(ConfigError) as judge:
        make_judge(EpisodeConfig.build(judge_model="openai:http://127.0.0.1:9/v1"))
    assert "--judge-model openai:URL" in str(judge.value)
    assert "--judge-model-name NAME" in str(judge.value) and "--user" not in str(judge.value)
    with pytest.raises(ConfigError, match="--user litellm:MODEL needs a model name"):
        make_transport("litellm", None, EpisodeConfig.build())
