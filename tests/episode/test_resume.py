"""Episodes that survive an abort (issue 23): suspend a seeded episode at every turn, resume it from
its JSON snapshot (once in another process), and get exactly what the uninterrupted run got.

The engine is the loopback engine playing the oracle (its tokens are teacher-forced oracle turns:
real tool calls, real tau2 tool results) with the scripted user, through the token policy; the
reference is the same episode run in one go. Compared: tau2 messages (timestamps removed: the
resumed part is new wall time), the reward and tau2's reward info, the termination reason, the
token ids, loss mask, logprobs, spans and the step counters.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import requires_tau2

pytest.importorskip("transformers", reason="token-level tests need the testing extra")

from slime_helpers import OracleEngine
from tau_adapters.agents.token_policy import TokenPolicy, load_template
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.testing import Fault, LoopbackEngine
from tau_adapters.users.scripted import ScriptedUser

pytestmark = requires_tau2

DOMAINS = ["airline", "retail", "telecom"]
SAMPLING = {"sampling_seed": 10}  # even: the oracle engine plays the full plan


def _task(domain: str):
    tasks = get_domain(domain).tasks("test")
    # A task with user-side actions in telecom (the user's device state must be replayed too),
    # else the one with the most actions (most turns).
    if domain == "telecom":
        tasks = [
            t for t in tasks if any(a.requestor == "user" for a in t.evaluation_criteria.actions)
        ]
    return sorted(tasks, key=lambda t: (-len(t.evaluation_criteria.actions or []), t.id))[0]


@pytest.fixture(scope="module")
def tasks():
    return {d: _task(d) for d in DOMAINS}


@pytest.fixture(scope="module")
def engine(tasks):
    template = load_template("local:chatml")
    server = LoopbackEngine(
        template.tokenizer, canned=OracleEngine(template, list(tasks.values()))
    ).start()
    yield server
    server.stop()


def _config(domain: str) -> EpisodeConfig:
    return EpisodeConfig.build(
        domain=domain, policy="sglang:loopback", tokenizer="local:chatml", max_new_tokens=512
    )


def _policy(engine, config):
    return TokenPolicy(engine.url, config, sampling=SAMPLING, episode_id="tau-resume-test")


def _outcome(trajectory) -> dict:
    """What must not differ between a resumed episode and the same episode run in one go."""
    messages = []
    for message in trajectory.messages:
        data = message.model_dump(mode="json")
        data.pop("timestamp", None)
        messages.append(data)
    transcript = trajectory.transcript
    info = trajectory.reward_info.model_dump(mode="json") if trajectory.reward_info else None
    return {
        "status": trajectory.status,
        "termination_reason": trajectory.termination_reason,
        "reward": trajectory.reward,
        "reward_info": info,
        "messages": messages,
        "ids": transcript.ids.tolist(),
        "loss_mask": transcript.loss_mask.tolist(),
        "logprobs": transcript.logprobs.tolist(),
        "spans": [[s.kind, s.start, s.end, s.role] for s in transcript.spans],
        "counts": {
            k: trajectory.counts[k]
            for k in ("steps", "agent_turns", "user_turns", "tool_calls", "tool_errors", "messages")
        },
    }


def _suspend_at(k: int):
    """A host flag that turns on at the k-th turn boundary the rollout checks."""
    seen = {"n": 0}

    def flag() -> bool:
        seen["n"] += 1
        return seen["n"] > k

    return flag


async def _run(engine, task, domain, **kw):
    config = _config(domain)
    return await rollout(task, config, policy=_policy(engine, config), user=ScriptedUser(), **kw)


@pytest.mark.parametrize("domain", DOMAINS)
def test_suspend_at_every_turn_boundary_resumes_to_the_same_episode(engine, tasks, domain) -> None:
    task = tasks[domain]
    engine.fault_policy = None
    reference = asyncio.run(_run(engine, task, domain))
    assert reference.status == "completed" and reference.reward == 1.0, reference.error
    expected = _outcome(reference)
    turns = reference.counts["agent_turns"]
    assert turns >= 3
    if domain == "telecom":  # the user's own tool calls are in the replayed part
        assert any(m.role == "tool" and m.requestor == "user" for m in reference.messages)
    for k in range(turns):
        suspended = asyncio.run(_run(engine, task, domain, should_suspend=_suspend_at(k)))
        assert suspended.status == "aborted" and suspended.snapshot is not None
        assert suspended.snapshot["suspended"]["where"] == "boundary"
        assert suspended.reward_info is None  # never scored half-way
        snapshot = json.loads(json.dumps(suspended.snapshot))
        resumed = asyncio.run(_run(engine, task, domain, resume=snapshot))
        assert resumed.snapshot is None
        assert _outcome(resumed) == expected, f"suspended at boundary {k}"
        assert resumed.counts["resumed"] == 1


@pytest.mark.parametrize("domain", DOMAINS)
def test_suspend_mid_generation_keeps_the_tokens_and_continues_exactly(
    engine, tasks, domain
) -> None:
    """The engine aborts the k-th request after 3 tokens; the policy keeps them and the resumed
    request continues the turn (its input is the prompt plus those tokens, its budget what the
    turn has left)."""
    task = tasks[domain]
    engine.fault_policy = None
    expected = _outcome(asyncio.run(_run(engine, task, domain)))
    n_requests = expected["counts"]["agent_turns"]
    for k in range(n_requests):
        calls = {"n": 0}

        def abort_kth(endpoint, body, k=k, calls=calls):
            if endpoint != "generate":
                return None
            calls["n"] += 1
            return Fault("abort", tokens=3) if calls["n"] == k + 1 else None

        engine.fault_policy = abort_kth
        suspended = asyncio.run(_run(engine, task, domain, should_suspend=lambda: False))
        engine.fault_policy = None
        assert suspended.snapshot is not None, suspended.error
        partial = suspended.snapshot["policy"]["partial"]
        assert suspended.snapshot["suspended"]["where"] == "policy"
        assert len(partial["ids"]) == 3
        before = len(engine.generate_log)
        resumed = asyncio.run(
            _run(engine, task, domain, resume=json.loads(json.dumps(suspended.snapshot)))
        )
        first = engine.generate_log[before]
        kept = suspended.snapshot["policy"]["transcript"]["ids"]
        assert first["input_ids"] == kept + partial["ids"]
        assert first["sampling_params"]["max_new_tokens"] == 512 - 3
        assert _outcome(resumed) == expected, f"aborted in request {k}"


def test_resume_in_another_process(engine, tasks, tmp_path: Path) -> None:
    domain = "telecom"
    task = tasks[domain]
    engine.fault_policy = None
    expected = _outcome(asyncio.run(_run(engine, task, domain)))
    suspended = asyncio.run(_run(engine, task, domain, should_suspend=_suspend_at(2)))
    (tmp_path / "snapshot.json").write_text(json.dumps(suspended.snapshot))
    script = f"""
import asyncio, json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from test_resume import _outcome, _config, SAMPLING
from tau_adapters.agents.token_policy import TokenPolicy
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.users.scripted import ScriptedUser
config = _config({domain!r})
task = next(t for t in get_domain({domain!r}).tasks("test") if t.id == {task.id!r})
policy = TokenPolicy({engine.url!r}, config, sampling=SAMPLING)
snapshot = json.load(open({str(tmp_path / "snapshot.json")!r}))
trajectory = asyncio.run(rollout(task, config, policy=policy, user=ScriptedUser(), resume=snapshot))
print(json.dumps(_outcome(trajectory)))
"""
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


def test_a_tool_result_that_differs_on_replay_fails_the_episode_naming_the_call(
    engine, tasks
) -> None:
    domain = "airline"
    task = tasks[domain]
    engine.fault_policy = None
    suspended = asyncio.run(_run(engine, task, domain, should_suspend=_suspend_at(3)))
    snapshot = json.loads(json.dumps(suspended.snapshot))
    messages = snapshot["session"]["messages"]
    index = next(i for i, m in enumerate(messages) if m["role"] == "tool")
    messages[index]["content"] = json.dumps({"edited": True})
    name = next(
        c["name"]
        for m in messages[:index]
        for c in (m.get("tool_calls") or [])
        if c["id"] == messages[index]["id"]
    )
    resumed = asyncio.run(_run(engine, task, domain, resume=snapshot))
    assert resumed.status == "failed"
    assert "resume: replayed " + name in (resumed.error or "")
    assert f"(message {index})" in resumed.error


def test_a_snapshot_of_another_configuration_is_refused(engine, tasks) -> None:
    domain = "airline"
    task = tasks[domain]
    suspended = asyncio.run(_run(engine, task, domain, should_suspend=_suspend_at(1)))
    config = _config(domain).model_copy(update={"max_new_tokens": 100})
    resumed = asyncio.run(
        rollout(
            task,
            config,
            policy=_policy(engine, config),
            user=ScriptedUser(),
            resume=suspended.snapshot,
        )
    )
    assert resumed.status == "failed"
    assert "configuration changed" in resumed.error


class PlanEngine:
    """`canned` for one task: the oracle's turn number n is the number of assistant turns the
    prompt already holds (a stateless engine, so a resumed episode gets the same answers)."""

    def __init__(self, template, task) -> None:
        from slime_helpers import oracle_texts
        from tau_adapters.parsers.base import HermesParser

        self.template = template
        self.plan = [
            [*template.encode(text), template.eot_id] for text in oracle_texts(task, HermesParser())
        ]

    def __call__(self, input_ids, body):
        turn = self.template.decode(input_ids).count("<|im_start|>assistant\n") - 1
        return self.plan[min(turn, len(self.plan) - 1)]


def _user_words(body) -> dict:
    """The user model: its words name how many messages it was shown (a user restored with the
    wrong history says something else); it stops only after the agent's goodbye."""
    messages = body.get("messages") or []
    if messages and "###STOP###" in (messages[-1].get("content") or ""):
        # tau-bench v1 ends on the user's stop only: the user answers the agent's goodbye so.
        return {"role": "assistant", "content": "###STOP###"}
    return {"role": "assistant", "content": f"I see {len(messages)} messages; please go on."}


@pytest.mark.parametrize(
    "domain",
    [
        "airline",
        pytest.param(
            "tau1-retail",
            marks=pytest.mark.skipif(
                __import__("importlib").util.find_spec("tau_bench") is None,
                reason="tau-bench v1 is not installed (CI leg .ci/legs/20-tau-bench.sh installs "
                "its wheel)",
            ),
        ),
    ],
)
def test_llm_users_resume_without_a_user_model_call(domain) -> None:
    """tau2's LLM user and tau-bench v1's user strategies: the restored user continues its own
    conversation (same words), and the user model is called only for turns after the suspension."""
    template = load_template("local:chatml")
    backend = get_domain(domain)
    tasks = backend.tasks("test")
    task = sorted(tasks, key=lambda t: (-len(t.evaluation_criteria.actions or []), str(t.id)))[0]
    with LoopbackEngine(template.tokenizer, canned=PlanEngine(template, task)).start() as server:
        server.chat_responder = _user_words
        config = EpisodeConfig.build(
            domain=domain,
            split="test",
            policy="sglang:loopback",
            tokenizer="local:chatml",
            max_new_tokens=512,
            user=f"openai:{server.url}/v1",
            user_model="user-sim",
        )

        def run(**kw):
            from tau_adapters.plugins import make_user

            user = make_user(config.user, config)
            policy = TokenPolicy(server.url, config, sampling=SAMPLING)
            return asyncio.run(rollout(task, config, policy=policy, user=user, **kw))

        reference = run()
        assert reference.status == "completed", reference.error
        expected = _outcome(reference)
        total_calls = server.requests["chat"]
        assert total_calls >= 2
        for k in range(1, reference.counts["agent_turns"]):
            server.requests.clear()
            suspended = run(should_suspend=_suspend_at(k))
            resumed = run(resume=json.loads(json.dumps(suspended.snapshot)))
            assert _outcome(resumed) == expected, f"suspended at boundary {k}"
            # Both parts together called the user model as often as the run in one go: none
            # was repeated to restore the user.
            assert server.requests["chat"] == total_calls


@pytest.mark.parametrize("where", ["user", "env"])
def test_cancelled_during_a_user_or_tool_call_resumes_by_making_that_call_again(
    where, monkeypatch
) -> None:
    """The host cancels the episode while the user model (or a tool) is being called: the
    snapshot is the state from before that call, and the resumed episode makes it again."""
    import threading

    from tau_adapters.episode.session import Session

    domain = "airline"
    template = load_template("local:chatml")
    task = sorted(
        get_domain(domain).tasks("test"),
        key=lambda t: (-len(t.evaluation_criteria.actions or []), str(t.id)),
    )[0]
    with LoopbackEngine(template.tokenizer, canned=PlanEngine(template, task)).start() as server:
        server.chat_responder = _user_words
        config = EpisodeConfig.build(
            domain=domain,
            split="test",
            policy="sglang:loopback",
            tokenizer="local:chatml",
            max_new_tokens=512,
            user=f"openai:{server.url}/v1",
            user_model="user-sim",
        )

        def parties():
            from tau_adapters.plugins import make_user

            return TokenPolicy(server.url, config, sampling=SAMPLING), make_user(
                config.user, config
            )

        policy, user = parties()
        expected = _outcome(asyncio.run(rollout(task, config, policy=policy, user=user)))
        chat_calls = server.requests["chat"]
        release = threading.Event()
        started = threading.Event()
        if where == "user":  # the second user reply hangs
            server.fault_policy = lambda e, b: (
                Fault("delay", seconds=30)
                if e == "chat" and server.requests["chat"] == chat_calls + 2
                else None
            )
            started_when = lambda: server.requests["chat"] >= chat_calls + 2  # noqa: E731
        else:  # the third tool call hangs
            original = Session._call_tool
            calls = {"n": 0}

            def hanging(self, env, call):
                calls["n"] += 1
                if calls["n"] == 3:
                    started.set()
                    release.wait(30)
                return original(self, env, call)

            monkeypatch.setattr(Session, "_call_tool", hanging)
            started_when = started.is_set

        async def cut():
            policy, user = parties()
            episode = asyncio.ensure_future(
                rollout(
                    task,
                    config,
                    policy=policy,
                    user=user,
                    on_cancel="return",
                    should_suspend=lambda: False,
                )
            )
            while not started_when():
                await asyncio.sleep(0.01)
            episode.cancel()
            return await episode

        suspended = asyncio.run(cut())
        release.set()
        server.fault_policy = None
        monkeypatch.undo()
        assert suspended.snapshot is not None, suspended.error
        assert suspended.snapshot["suspended"]["where"] == where
        assert suspended.snapshot["observation"] is None
        before = server.requests["chat"]
        policy, user = parties()
        resumed = asyncio.run(
            rollout(
                task,
                config,
                policy=policy,
                user=user,
                resume=json.loads(json.dumps(suspended.snapshot)),
            )
        )
        assert resumed.status == "completed", resumed.error
        assert _outcome(resumed) == expected
        # Every user reply was asked for once more in all than in one go (the cut one), or
        # exactly as often when a tool call was cut.
        made = server.requests["chat"] - chat_calls
        assert made == chat_calls + (1 if where == "user" else 0), (made, before)


def test_a_solo_episode_resumes_at_every_boundary() -> None:
    """tau2's solo protocol (no user): suspended at every turn, resumed to the same episode."""
    from tau_adapters.domains.tau2.solo import solo
    from tau_adapters.episode.text_episode import oracle_texts

    template = load_template("local:chatml")
    tasks = [t for t in get_domain("mock").tasks() if solo().task_problem(t) is None]
    task = max(tasks, key=lambda t: len(t.evaluation_criteria.actions or []))
    plan = [[*template.encode(text), template.eot_id] for text in oracle_texts(task, solo=True)]

    def canned(input_ids, body):
        turn = template.decode(input_ids).count("<|im_start|>assistant\n") - 1
        return plan[min(turn, len(plan) - 1)]

    config = EpisodeConfig.build(
        domain="mock", solo_mode=True, policy="sglang:x", tokenizer="local:chatml"
    )
    with LoopbackEngine(template.tokenizer, canned=canned).start() as server:

        def run(**kw):
            policy = TokenPolicy(server.url, config, sampling=SAMPLING)
            return asyncio.run(rollout(task, config, policy=policy, **kw))

        reference = run()
        assert reference.status == "completed" and reference.reward == 1.0, reference.error
        expected = _outcome(reference)
        for k in range(reference.counts["agent_turns"]):
            suspended = run(should_suspend=_suspend_at(k))
            assert suspended.snapshot["user"] == {"kind": "solo"}
            resumed = run(resume=json.loads(json.dumps(suspended.snapshot)))
            assert _outcome(resumed) == expected, f"suspended at boundary {k}"
