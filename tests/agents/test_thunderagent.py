"""ThunderAgent: episodes through a router in front of a separate loopback engine.

Each test runs against the ThunderAgent-protocol stand-in (`tau_adapters.testing.LoopbackRouter`,
always) and against the real router (``python -m ThunderAgent``, skipped with the reason where it
is not available; see tests/router_helpers.py): the tool_improve build with
``--enable-slime-adapter`` for the token-level ``sglang:`` policy, the main build for the
``openai:`` policy. Every program is registered while its episode runs and released exactly once
whatever way the episode ends (``GET /programs`` empty afterwards).
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from conftest import requires_tau2

pytest.importorskip("torch", reason="token-level tests need the testing extra (torch)")

import tau_adapters.agents.thunderagent as ta
from router_helpers import RealRouter, find_router
from tau_adapters.agents.chat_policy import OpenAIChatPolicy
from tau_adapters.agents.token_policy import template_for
from tau_adapters.cli.main import main
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.errors import ConfigError
from tau_adapters.runtime.http_client import relayed_client_error
from tau_adapters.testing import Fault, LoopbackEngine, LoopbackRouter

from token_helpers import ForcedOracle

pytestmark = requires_tau2

SGLANG_ROUTERS = ["standin-tool_improve", "real-tool_improve"]
OPENAI_ROUTERS = ["standin-main", "real-main"]


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    config = EpisodeConfig.build(tokenizer="local:chatml")
    server = LoopbackEngine(template_for(config).tokenizer, seed=1).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def started(engine):
    servers: dict[str, object] = {}
    yield servers
    for server in servers.values():
        server.stop()


def _router(started, engine, name: str):
    """The router `name` (``standin-<build>`` or ``real-<build>``), started once per module."""
    if name not in started:
        kind, build = name.split("-", 1)
        if kind == "real":
            found = find_router(build)
            if isinstance(found, str):
                required = os.environ.get("TAU_ADAPTERS_REQUIRE_THUNDERAGENT", "").split(",")
                if build in required:  # the CI leg made this router's venv: no skipping
                    pytest.fail(found)
                pytest.skip(found)
            started[name] = RealRouter(build, engine.url).start()
        else:
            started[name] = LoopbackRouter(engine.url, build=build).start()
    return started[name]


@pytest.fixture(autouse=True)
def clean(engine, monkeypatch):
    engine.fault_policy = None
    engine.chat_responder = None
    ta.forget_probes()
    calls: dict[str, int] = {}
    original = ta.release_program

    async def counting(url, program_id, **kwargs):
        calls[program_id] = calls.get(program_id, 0) + 1
        return await original(url, program_id, **kwargs)

    monkeypatch.setattr(ta, "release_program", counting)
    yield calls
    engine.fault_policy = None
    engine.chat_responder = None


def _config(**changes) -> EpisodeConfig:
    base = {
        "domain": "airline",
        "policy": "sglang:loopback",
        "tokenizer": "local:chatml",
        "thunderagent": True,
        "request_attempts": 3,
        "request_timeout_s": 5.0,
    }
    return EpisodeConfig.build(**{**base, **changes})


def _task(actions: int = 3):
    tasks = get_domain("airline").tasks("test")
    return next(t for t in tasks if len(t.evaluation_criteria.actions or []) >= actions)


def _faults(endpoint: str, schedule: dict[int, Fault]):
    """Inject `schedule[n]` into the n-th call of `endpoint` (1-based)."""
    calls = {"n": 0}

    def policy(name, body):
        if name != endpoint:
            return None
        calls["n"] += 1
        return schedule.get(calls["n"])

    return policy


class Watched(ForcedOracle):
    """The forced oracle, noting whether the router lists its program after the first answer."""

    def __init__(self, url, config, router, **kwargs):
        super().__init__(url, config, **kwargs)
        self.router = router
        self.listed: bool | None = None

    async def act(self, observation):
        try:
            return await super().act(observation)
        finally:  # answered or not: the request reached the router
            if self.listed is None:
                live = await asyncio.to_thread(self.router.live)
                self.listed = self.episode_id in live


def _released_once(router, policy, trajectory, calls) -> None:
    assert calls.get(policy.episode_id) == 1, calls
    assert trajectory.counts["program_released"] == 1, trajectory.counts
    assert trajectory.counts["program_not_registered"] == 0
    assert router.live() == {}
    if isinstance(router, LoopbackRouter):
        assert router.registered[policy.episode_id] == 1
        assert router.released[policy.episode_id] == 1


# -- unit: telling a relayed 4xx from a transient 502 ----------------------------------------------
def test_relayed_client_error_reads_thunderagents_502_detail() -> None:
    detail = (
        "Backend generate request failed: Client error '400 Bad Request' for url "
        "'http://e/generate'\nFor more information check: https://developer.mozilla.org/"
    )
    import json

    def body(text):
        return json.dumps({"detail": text}).encode()

    assert relayed_client_error(502, body(detail)) == 400
    assert relayed_client_error(502, body(detail.replace("400 Bad Request", "429 Too"))) == 429
    server = "Backend generate request failed: Server error '503 Service Unavailable' for url 'x'"
    assert relayed_client_error(502, body(server)) is None
    assert (
        relayed_client_error(502, body("Backend generate request failed: All connection")) is None
    )
    assert relayed_client_error(500, body(detail)) is None
    assert relayed_client_error(502, b"<html>bad gateway</html>") is None


# -- sglang: through tool_improve --enable-slime-adapter -------------------------------------------
SCENARIOS = {
    # name: (engine faults on /generate, config changes, expected status, error fragment)
    "completed": ({}, {}, "completed", None),
    "engine-503s": (
        {n: Fault("status", status=503) for n in range(2, 50)},
        {},
        "failed",
        "3 attempts",
    ),
    "timeout": (
        {n: Fault("delay", seconds=1.5) for n in range(2, 50)},
        {"request_timeout_s": 0.4, "request_attempts": 2},
        "failed",
        "timeout",
    ),
    "abort": ({2: Fault("abort")}, {}, "aborted", None),
    "truncated": ({}, {"max_response_tokens": 120}, "truncated", None),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("which", SGLANG_ROUTERS)
def test_sglang_episode_releases_its_program_once(engine, started, clean, which, scenario) -> None:
    router = _router(started, engine, which)
    faults, changes, status, fragment = SCENARIOS[scenario]
    engine.fault_policy = _faults("generate", faults)
    config = _config(**changes)
    policy = Watched(router.url, config, router)
    trajectory = asyncio.run(rollout(_task(actions=4), config, policy=policy))
    assert trajectory.status == status, trajectory.error
    if fragment:
        assert fragment in trajectory.error
    assert policy.listed is True  # registered while the episode ran
    _released_once(router, policy, trajectory, clean)
    # the engine behind saw the program id (ThunderAgent's /generate forwards the body as is)
    assert engine.program_ids[policy.episode_id] >= 1


@pytest.mark.parametrize("on_cancel", ["raise", "return"])
@pytest.mark.parametrize("which", SGLANG_ROUTERS)
def test_cancelled_sglang_episode_releases_once(engine, started, clean, which, on_cancel) -> None:
    router = _router(started, engine, which)
    engine.fault_policy = _faults("generate", {n: Fault("delay", seconds=3.0) for n in range(2, 9)})
    config = _config()
    policy = ForcedOracle(router.url, config)

    async def go():
        task = asyncio.ensure_future(rollout(_task(), config, policy=policy, on_cancel=on_cancel))
        while policy.generations < 1:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the second request is now waiting in the router
        assert policy.episode_id in await asyncio.to_thread(router.live)
        task.cancel()
        if on_cancel == "raise":
            with pytest.raises(asyncio.CancelledError):
                await task
            return None
        return await task

    result = asyncio.run(go())
    assert clean.get(policy.episode_id) == 1
    assert policy.counts["program_released"] == 1
    if result is not None:
        assert result.status == "aborted" and result.counts["program_released"] == 1
    assert router.live() == {}


@pytest.mark.parametrize(("status", "engine_calls"), [(400, 1), (422, 1), (503, 4), (429, 4)])
@pytest.mark.parametrize("which", SGLANG_ROUTERS)
def test_engine_4xx_relayed_as_502_is_not_retried(
    engine, started, clean, which, status, engine_calls
) -> None:
    router = _router(started, engine, which)
    engine.fault_policy = _faults(
        "generate", {n: Fault("status", status=status) for n in range(2, 9)}
    )
    config = _config(request_attempts=4)
    policy = ForcedOracle(router.url, config)
    before = engine.requests["generate"]
    trajectory = asyncio.run(rollout(_task(), config, policy=policy))
    assert trajectory.status == "failed"
    assert "HTTP 502" in trajectory.error  # the router's answer, whatever the engine said
    # one good call, then the failing one: once for a deterministic 4xx, 4 attempts otherwise
    assert engine.requests["generate"] - before == 1 + engine_calls
    if engine_calls == 1:
        assert f"relaying the engine's {status}" in trajectory.error
    if isinstance(router, LoopbackRouter):
        assert router.steps[policy.episode_id] == 1 + engine_calls
    _released_once(router, policy, trajectory, clean)


# -- openai: through main ----------------------------------------------------------------------------
def _chat_script(task):
    """Scripted chat answers: one tool call of the task's first gold action, then stop."""
    action = task.evaluation_criteria.actions[0]
    turns = {"n": 0}

    def respond(body):
        turns["n"] += 1
        if turns["n"] == 1:
            import json

            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": action.name, "arguments": json.dumps(action.arguments)},
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"role": "assistant", "content": "###STOP###"}

    return respond


def _chat_config(**changes) -> EpisodeConfig:
    return _config(policy="openai:loopback", model="tiny", **changes)


@pytest.mark.parametrize("scenario", ["completed", "engine-500s"])
@pytest.mark.parametrize("which", OPENAI_ROUTERS)
def test_openai_episode_sends_program_id_and_releases_once(
    engine, started, clean, which, scenario
) -> None:
    router = _router(started, engine, which)
    task = _task()
    engine.chat_responder = _chat_script(task)
    if scenario == "engine-500s":
        engine.fault_policy = _faults("chat", {n: Fault("status", status=500) for n in range(2, 9)})
    config = _chat_config()
    policy = OpenAIChatPolicy(router.url + "/v1", config)
    listed = {}
    original = policy.client.complete

    async def complete(payload, **kwargs):
        body = await original(payload, **kwargs)
        listed.setdefault("first", policy.episode_id in await asyncio.to_thread(router.live))
        return body

    policy.client.complete = complete
    trajectory = asyncio.run(rollout(task, config, policy=policy))
    if scenario == "completed":
        assert trajectory.status == "completed", trajectory.error
        assert trajectory.counts["tool_calls"] == 1
    else:
        assert trajectory.status == "failed" and "HTTP 500" in trajectory.error
    assert listed["first"] is True
    assert engine.program_ids[policy.episode_id] == 0  # main strips program_id before the engine
    _released_once(router, policy, trajectory, clean)


@pytest.mark.parametrize("which", OPENAI_ROUTERS)
def test_cancelled_openai_episode_releases_once(engine, started, clean, which) -> None:
    router = _router(started, engine, which)
    task = _task()
    engine.chat_responder = _chat_script(task)
    engine.fault_policy = _faults("chat", {n: Fault("delay", seconds=3.0) for n in range(2, 9)})
    config = _chat_config()
    policy = OpenAIChatPolicy(router.url + "/v1", config)

    async def go():
        job = asyncio.ensure_future(rollout(task, config, policy=policy, on_cancel="return"))
        while policy.turns < 1:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        job.cancel()
        return await job

    result = asyncio.run(go())
    assert result.status == "aborted"
    assert clean.get(policy.episode_id) == 1 and result.counts["program_released"] == 1
    assert router.live() == {}


def test_without_thunderagent_openai_sends_no_program_id(engine, started) -> None:
    router = _router(started, engine, "standin-main")
    task = _task()
    engine.chat_responder = _chat_script(task)
    config = _chat_config(thunderagent=False)
    policy = OpenAIChatPolicy(router.url + "/v1", config)
    trajectory = asyncio.run(rollout(task, config, policy=policy))
    assert trajectory.status == "completed"
    assert "program_released" not in trajectory.counts
    assert router.live().keys() == {"default"}  # what the issue saw: one shared, never freed
    router.forget("default")


# -- release outcomes ------------------------------------------------------------------------------
def test_released_false_is_logged_and_counted(engine, started, clean, caplog) -> None:
    router = _router(started, engine, "standin-tool_improve")

    class Forgotten(ForcedOracle):
        async def close(self):
            router.forget(self.episode_id)  # as after a router restart
            await super().close()

    config = _config()
    policy = Forgotten(router.url, config)
    with caplog.at_level(logging.WARNING, logger="tau_adapters.agents.thunderagent"):
        trajectory = asyncio.run(rollout(_task(), config, policy=policy))
    assert trajectory.status == "completed"
    assert trajectory.counts["program_not_registered"] == 1
    assert trajectory.counts["program_released"] == 0
    assert clean[policy.episode_id] == 1  # not interrupted: no second try
    assert "released=false" in caplog.text and policy.episode_id in caplog.text


def test_released_false_after_an_interrupted_request_is_asked_once_more(
    engine, started, clean
) -> None:
    """The router may register a program just after our release when the last request was cut
    off mid-flight; a released=false then gets one more try (and is counted if it stays false)."""
    router = _router(started, engine, "standin-tool_improve")
    engine.fault_policy = _faults("generate", {n: Fault("status", status=503) for n in range(2, 9)})

    class Forgotten(ForcedOracle):
        async def close(self):
            router.forget(self.episode_id)
            await super().close()

    config = _config(request_attempts=1)
    policy = Forgotten(router.url, config)
    policy.program.recheck_delay_s = 0.05
    trajectory = asyncio.run(rollout(_task(), config, policy=policy))
    assert trajectory.status == "failed"
    assert clean[policy.episode_id] == 2
    assert trajectory.counts["program_not_registered"] == 1


def test_no_release_when_no_request_was_sent(engine, started, clean) -> None:
    router = _router(started, engine, "standin-tool_improve")
    config = _config(max_context_tokens=10)  # the prompt alone is over: truncated before a call
    policy = ForcedOracle(router.url, config)
    trajectory = asyncio.run(rollout(_task(), config, policy=policy))
    assert trajectory.status == "truncated"
    assert policy.episode_id not in clean
    assert not any(key.startswith("program_") for key in trajectory.counts)
    assert router.registered[policy.episode_id] == 0


# -- the start-up probe ----------------------------------------------------------------------------
@pytest.mark.parametrize("build", ["standin", "real"])
def test_probe_refuses_sglang_against_main_with_the_fix(engine, started, build) -> None:
    router = _router(started, engine, f"{build}-main")
    info = asyncio.run(ta.probe_router(router.url))
    assert info.thunderagent and info.has_generate is False and info.has_chat is True
    assert "main" in info.build
    for flag in (True, False):
        ta.forget_probes()
        with pytest.raises(ConfigError) as raised:
            asyncio.run(ta.ensure_router(router.url, "sglang", thunderagent=flag))
        assert "--enable-slime-adapter" in str(raised.value)
        assert f"openai:{router.url}/v1" in str(raised.value)
    ok = asyncio.run(ta.ensure_router(router.url + "/v1", "openai", thunderagent=True))
    assert ok.thunderagent


@pytest.mark.parametrize("build", ["standin", "real"])
def test_probe_accepts_sglang_against_tool_improve(engine, started, build, caplog) -> None:
    router = _router(started, engine, f"{build}-tool_improve")
    with caplog.at_level(logging.INFO, logger="tau_adapters.agents.thunderagent"):
        info = asyncio.run(ta.ensure_router(router.url, "sglang", thunderagent=True))
    assert info.has_generate is True and "tool_improve" in info.build
    assert "tool_improve" in caplog.text
    assert router.live() == {}  # probing created no program


def test_probe_refuses_thunderagent_flag_without_a_thunderagent_router(engine) -> None:
    with pytest.raises(ConfigError) as raised:
        asyncio.run(ta.ensure_router(engine.url, "sglang", thunderagent=True))
    assert "not a ThunderAgent router" in str(raised.value)
    assert "TAU_ADAPTERS_THUNDERAGENT=0" in str(raised.value)
    ta.forget_probes()
    assert asyncio.run(ta.ensure_router(engine.url, "sglang", thunderagent=False)).has_generate


def test_probe_warns_when_the_flag_is_off_behind_thunderagent(engine, started) -> None:
    router = _router(started, engine, "standin-tool_improve")
    info = asyncio.run(ta.probe_router(router.url))
    warnings = ta.check_combination(info, "sglang", thunderagent=False)
    assert any("'default' program" in w for w in warnings)
    unreachable = asyncio.run(ta.probe_router("http://127.0.0.1:9"))
    assert not unreachable.reachable
    assert ta.check_combination(unreachable, "sglang", thunderagent=True)  # a warning, no raise


def test_cli_eval_exits_2_for_sglang_against_main(engine, started, tmp_path, capsys) -> None:
    router = _router(started, engine, "standin-main")
    code = main(
        [
            "eval",
            "--domain",
            "airline",
            "--num-tasks",
            "1",
            "--policy",
            f"sglang:{router.url}",
            "--tokenizer",
            "local:chatml",
            "--thunderagent",
            "--user",
            "scripted",
            "--no-progress",
            "--output",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--enable-slime-adapter" in err and "/generate" in err
    assert router.live() == {}


@pytest.mark.parametrize("which", OPENAI_ROUTERS)
def test_router_unreachable_at_start_up_is_probed_again(engine, which) -> None:
    """A router that is not up yet when a host first probes it (the usual start-up race) must be
    probed again on the next check: were the "unreachable" answer remembered for the process,
    the flag check would never run and a later start-up would report a dead router."""
    from router_helpers import _free_port

    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    first = asyncio.run(ta.ensure_router(url, "openai", thunderagent=True))
    assert first.reachable is False  # nothing listens there yet: a warning, not an error
    kind, build = which.split("-", 1)
    if kind == "real":
        found = find_router(build)
        if isinstance(found, str):
            if build in os.environ.get("TAU_ADAPTERS_REQUIRE_THUNDERAGENT", "").split(","):
                pytest.fail(found)
            pytest.skip(found)
        router = RealRouter(build, engine.url)
        router.port = port
        router.start()
    else:
        router = LoopbackRouter(engine.url, build=build).start(port)
    try:
        second = asyncio.run(ta.ensure_router(url, "openai", thunderagent=True))
        # What the router itself serves: ThunderAgent's program list, so the probe says so.
        assert (second.reachable, second.thunderagent, second.has_chat) == (True, True, True)
    finally:
        router.stop()
