"""Bad names fail early with the valid values; bad tool calls become tau2 error messages."""

from __future__ import annotations

import asyncio
import json

import pytest

from tau_adapters.cli.main import main
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.session import Session
from tau_adapters.errors import ConfigError, UnknownNameError
from tau_adapters.users.scripted import ScriptedUser

from conftest import requires_tau2

pytestmark = requires_tau2


def test_unknown_domain_split_and_task_id_list_valid_values() -> None:
    with pytest.raises(ConfigError, match="airline, retail, telecom"):
        EpisodeConfig.build(domain="airlines")
    with pytest.raises(UnknownNameError, match="train, test, base"):
        get_domain("airline").tasks("dev")
    with pytest.raises(UnknownNameError, match="valid values"):
        get_domain("retail").task("no-such-task")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["eval", "--domain", "airlines"], "unknown domain 'airlines'"),
        (["eval", "--domain", "airline", "--split", "dev"], "valid values: train, test, base"),
        (["eval", "--domain", "airline", "--task-ids", "nope"], "unknown task id"),
        (
            ["eval", "--policy", "gpt-5"],
            "unknown policy 'gpt-5'; valid values: openai, oracle, sglang",
        ),
        (["tasks", "list", "--domain", "banking"], "unknown domain 'banking'"),
    ],
)
def test_cli_bad_values_exit_2_with_valid_values(argv, fragment, capsys, tmp_path) -> None:
    code = main([*argv, *(["--output", str(tmp_path)] if argv[0] == "eval" else [])])
    assert code == 2
    assert fragment in capsys.readouterr().err


def test_cli_bad_flag_value_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--num-trials", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"domain": "airline"\n', "not valid JSON"),
        ("[1, 2]\n", "expected a JSON object"),
        ('{"domain": "airline", "task_id": "0"}\n', "missing field(s) messages"),
        (
            '{"domain": "airline", "task_id": "0", "termination_reason": "user_stop", '
            '"messages": [{"role": "wizard"}]}\n',
            "not tau2 messages",
        ),
        (
            '{"domain": "airline", "task_id": "0", "termination_reason": "bored", "messages": []}\n',
            "termination_reason 'bored'",
        ),
    ],
)
def test_score_rejects_malformed_files(content, fragment, tmp_path, capsys) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert main(["score", str(path)]) == 2
    assert fragment in capsys.readouterr().err


def _session(domain: str = "airline") -> Session:
    backend = get_domain(domain)
    config = EpisodeConfig.build(domain=domain)
    return Session(backend.tasks()[0], config, ScriptedUser())


def test_unknown_tool_and_bad_arguments_become_error_tool_messages() -> None:
    session = _session()
    t = session.tau2

    async def go():
        await session.start()
        unknown = await session.step(
            t.AssistantMessage(
                role="assistant",
                tool_calls=[t.ToolCall(id="1", name="launch_rocket", arguments={})],
            )
        )
        bad_args = await session.step(
            t.AssistantMessage(
                role="assistant",
                tool_calls=[t.ToolCall(id="2", name="get_user_details", arguments={"nope": 1})],
            )
        )
        return unknown, bad_args

    unknown, bad_args = asyncio.run(go())
    for result in (unknown, bad_args):
        assert not result.done
        (message,) = result.observation
        assert message.role == "tool" and message.error
        assert message.content.startswith("Error:")
    assert "launch_rocket" in unknown.observation[0].content
    assert session.counters.errors == 2


def test_too_many_errors_ends_the_episode() -> None:
    backend = get_domain("airline")
    config = EpisodeConfig.build(domain="airline", max_errors=2)
    session = Session(backend.tasks()[0], config, ScriptedUser())
    t = session.tau2

    async def go():
        await session.start()
        results = []
        for i in range(3):
            if session.done:
                break
            results.append(
                await session.step(
                    t.AssistantMessage(
                        role="assistant",
                        tool_calls=[t.ToolCall(id=str(i), name="nope", arguments={})],
                    )
                )
            )
        return results

    results = asyncio.run(go())
    assert results[-1].done
    assert session.termination_reason == "too_many_errors"
    assert session.score().reward == 0.0


def test_empty_agent_message_ends_with_agent_error() -> None:
    session = _session()
    t = session.tau2

    async def go():
        await session.start()
        return await session.step(t.AssistantMessage(role="assistant", content="  "))

    result = asyncio.run(go())
    assert result.done and session.termination_reason == "agent_error"
    assert session.score().reward == 0.0


def test_user_failure_ends_with_user_error_not_an_exception() -> None:
    class BrokenUser(ScriptedUser):
        async def respond(self, message):
            raise RuntimeError("simulator endpoint down")

    backend = get_domain("airline")
    session = Session(backend.tasks()[0], EpisodeConfig.build(), BrokenUser())
    asyncio.run(session.start())
    assert session.done
    assert session.termination_reason == "user_error"
    assert session.status == "failed"
    assert "endpoint down" in session.error
    assert json.dumps(session.score().model_dump(mode="json"))
