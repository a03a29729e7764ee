"""`tau-adapters export`: warm-up traces from eval runs (rejection-sampled SFT sets).

Expected values come from tau2 itself (its agent prompt, greeting, gold actions, tool schemas), from
the engine's own record of sampled tokens, and from an independent render of the exported
conversation with the Hugging Face tokenizer's chat template.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from pathlib import Path

import pytest

from tau_adapters.cli.main import main

from conftest import requires_tau2

pytestmark = requires_tau2

TASKS = "26,6,18"  # airline test tasks with 0, 1 and 5 gold actions


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "oracle"
    code = main(
        [
            "eval",
            "--domain",
            "airline",
            "--split",
            "test",
            "--task-ids",
            TASKS,
            "--num-trials",
            "2",
            "--output",
            str(run),
        ]
    )
    assert code == 0
    return run


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sft_rows_are_what_the_policy_saw(oracle_run, tmp_path, tau2_api) -> None:
    out = tmp_path / "traces.jsonl"
    assert main(["export", str(oracle_run), "--output", str(out)]) == 0
    rows = _read(out)
    assert len(rows) == 6  # 3 tasks x 2 trials, all solved by the oracle
    t = tau2_api
    from tau2.registry import registry

    env = registry.get_env_constructor("airline")()
    tasks = {task.id: task for task in registry.get_tasks_loader("airline")()}
    expected_tools = [tool.openai_schema for tool in env.get_tools()]
    for row in rows:
        messages, meta = row["messages"], row["metadata"]
        assert row["tools"] == expected_tools
        assert messages[0]["role"] == "system"
        assert env.get_policy() in messages[0]["content"]
        assert t.AGENT_INSTRUCTION in messages[0]["content"]
        assert messages[1] == {"role": "assistant", "content": t.FIRST_AGENT_MESSAGE}
        assert messages[-1]["role"] == "assistant"
        assert [m["role"] for m in messages[2:3]] == ["user"]
        gold = [
            (a.name, a.arguments)
            for a in tasks[meta["task_id"]].evaluation_criteria.actions or []
            if a.requestor == "assistant"
        ]
        calls = [
            (c["function"]["name"], c["function"]["arguments"])
            for m in messages
            if m["role"] == "assistant"
            for c in m.get("tool_calls") or []
        ]
        assert calls == gold
        # Every tool call is answered by a tool message with its id, in order.
        ids = [c["id"] for m in messages for c in m.get("tool_calls") or []]
        assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == ids
        assert meta["domain"] == "airline" and meta["split"] == "test"
        assert meta["reward"] == 1.0 and meta["status"] == "completed"
        assert meta["run"] == str(oracle_run)
        assert "synthetic" in meta  # oracle traces are labelled as synthetic demonstrations


def test_telecom_user_side_tool_calls_are_not_in_the_agents_conversation(tmp_path) -> None:
    run = tmp_path / "telecom"
    args = ["eval", "--domain", "telecom", "--split", "test", "--num-tasks", "3"]
    assert main([*args, "--output", str(run)]) == 0
    trajectories = _read(run / "trajectories.jsonl")
    user_calls = sum(
        1
        for row in trajectories
        for m in row["messages"]
        if m["role"] == "user" and m.get("tool_calls")
    )
    assert user_calls > 0  # the tasks exercise the user's phone tools
    out = tmp_path / "t.jsonl"
    assert main(["export", str(run), "--output", str(out)]) == 0
    from tau2.registry import registry

    user_tool_names = {
        tool.name for tool in registry.get_env_constructor("telecom")().get_user_tools()
    }
    for row in _read(out):
        for m in row["messages"]:
            assert m["role"] != "user" or "tool_calls" not in m
            for call in m.get("tool_calls") or []:
                assert call["function"]["name"] not in user_tool_names
        assert {t["function"]["name"] for t in row["tools"]}.isdisjoint(user_tool_names)
        # Tool results are exactly the answers to the agent's own calls (none of the user's).
        ids = [c["id"] for m in row["messages"] for c in m.get("tool_calls") or []]
        assert [m["tool_call_id"] for m in row["messages"] if m["role"] == "tool"] == ids
        assert all(m["content"] for m in row["messages"] if m["role"] == "user")


def _write_run(folder: Path, rows: list[dict], config: dict) -> None:
    folder.mkdir(parents=True)
    with (folder / "trajectories.jsonl").open("w") as stream:
        for row in rows:
            stream.write(json.dumps(row) + "\n")
    (folder / "summary.json").write_text(json.dumps({"config": config}))


def test_selection_flags_select_what_they_say(oracle_run, tmp_path) -> None:
    base = _read(oracle_run / "trajectories.jsonl")
    config = json.loads((oracle_run / "summary.json").read_text())["config"]
    by_task = {}
    for row in sorted(base, key=lambda r: r["trial"]):  # file order is completion order
        by_task.setdefault(row["task_id"], []).append(row)
    rows = []
    # task 0: trial 0 reward 0 (rejected), trial 1 solved
    a, b = by_task["26"]
    rows += [{**a, "reward": 0.0}, b]
    # task 1: one solved but status failed (infrastructure), one truncated with reward 1
    a, b = by_task["6"]
    rows += [{**a, "status": "failed"}, {**b, "status": "truncated"}]
    # task 5: two solved, the second shorter (one extra user line dropped from the end)
    a, b = by_task["18"]
    shorter = {**b, "trial": 1, "messages": b["messages"][:-1]}
    rows += [a, shorter]
    run = tmp_path / "mixed"
    _write_run(run, rows, config)

    def export(*extra: str) -> list[dict]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.jsonl"
        assert main(["export", str(run), "--output", str(out), *extra]) == 0
        return _read(out)

    picked = [(r["metadata"]["task_id"], r["metadata"]["trial"]) for r in export()]
    assert picked == [("26", 1), ("18", 0), ("18", 1)]
    picked = [(r["metadata"]["task_id"], r["metadata"]["trial"]) for r in export("--per-task", "1")]
    assert picked == [("26", 1), ("18", 1)]  # the shorter of two equally good episodes
    picked = export("--status", "completed,truncated")
    assert [(r["metadata"]["task_id"], r["metadata"]["trial"]) for r in picked] == [
        ("26", 1),
        ("6", 1),
        ("18", 0),
        ("18", 1),
    ]
    assert len(export("--min-reward", "0")) == 4  # task 0 trial 0 joins, failed still out
    # Two oracle trials of task 0 and of task 5 are the same conversation; --dedupe keeps one.
    # The shorter task-18 row only lost its trailing user line, which export trims: same conversation.
    assert len(export("--dedupe")) == 2
    assert len(_read(_export_all(oracle_run, tmp_path, "--dedupe"))) == 3


def test_per_task_ranks_by_reward_before_length_and_drops_rejected_turns(
    oracle_run, tmp_path
) -> None:
    """``--per-task 1 --min-reward 0``: a longer solved episode beats a shorter failed one (best
    reward first, length only among equals); an episode with a rejected model turn is never
    exported, however good, as the rollout records one (``counts`` and the list)."""
    base = _read(oracle_run / "trajectories.jsonl")
    config = json.loads((oracle_run / "summary.json").read_text())["config"]
    by_task = {}
    for row in sorted(base, key=lambda r: r["trial"]):
        by_task.setdefault(row["task_id"], []).append(row)
    a, b = by_task["18"]  # two solved oracle episodes of a 5-action task
    # trial 0: much shorter, reward 0.5 (a partial one); trial 1: the full episode, reward 1.
    short = {**a, "reward": 0.5, "messages": a["messages"][:4]}
    assert len(short["messages"]) < len(b["messages"])
    c, d = by_task["6"]
    rejected = {
        **c,
        "counts": {**c.get("counts", {}), "rejected_turns": 1},
        "rejected_turns": [{"text": "<tool_call>{oops", "error": "malformed tool call"}],
    }
    run = tmp_path / "ranked"
    _write_run(run, [short, b, rejected, {**d, "reward": 0.0}], config)
    out = tmp_path / "ranked.jsonl"
    code = main(["export", str(run), "--output", str(out), "--per-task", "1", "--min-reward", "0"])
    assert code == 0
    picked = [(r["metadata"]["task_id"], r["metadata"]["trial"]) for r in _read(out)]
    # Task 18: trial 1 (reward 1) over the shorter trial 0 (0.5). Task 6: the rejected-turn
    # trial 0 (reward 1) is out, so only trial 1 (reward 0) is left for it.
    assert picked == [("18", 1), ("6", 1)]


def _export_all(run: Path, tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "all.jsonl"
    assert main(["export", str(run), "--output", str(out), "--overwrite", *extra]) == 0
    return out


def test_bad_inputs_exit_2_and_leave_no_output(oracle_run, tmp_path, capsys) -> None:
    out = tmp_path / "o.jsonl"
    assert main(["export", str(tmp_path / "missing"), "--output", str(out)]) == 2
    assert "no trajectories.jsonl" in capsys.readouterr().err
    assert not out.exists()

    good = _read(oracle_run / "trajectories.jsonl")
    broken = tmp_path / "broken"
    broken.mkdir()
    lines = [json.dumps(good[0]), "{not json", json.dumps(good[1])]
    (broken / "trajectories.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["export", str(broken), "--output", str(out)]) == 2
    assert "trajectories.jsonl:2" in capsys.readouterr().err
    assert not out.exists()

    # A row whose messages are not tau2 messages, after good rows: nothing half-written.
    bad_messages = tmp_path / "bad_messages"
    _write_run(bad_messages, [good[0], {**good[1], "messages": [{"role": "robot"}]}], {})
    assert main(["export", str(bad_messages), "--output", str(out)]) == 2
    assert "not tau2 messages" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.glob(".o.jsonl.*")) == []  # no temporary file left behind

    # An existing output is not overwritten without --overwrite.
    out.write_text("keep me\n")
    assert main(["export", str(oracle_run), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"

    # sft-tokens from a run without token-level rows exports nothing, and says why.
    target = tmp_path / "tokens.jsonl"
    assert main(["export", str(oracle_run), "--format", "sft-tokens", "--output", str(target)]) == 0
    assert target.read_text() == ""
    assert "not_token_level 6" in capsys.readouterr().out


# -- token-level runs ----------------------------------------------------------------------------


def _token_styles():
    from token_helpers import styles

    return [p for p in styles() if p.values[0][0] in ("local-chatml", "qwen2.5", "qwen3-hybrid")]


@pytest.fixture(scope="module", params=_token_styles())
def token_run(request, tmp_path_factory):
    pytest.importorskip("torch", reason="token-level export tests need the testing extra (torch)")
    from tau_adapters.agents.token_policy import template_for
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.rollout import rollout
    from tau_adapters.evaluation.run import write_summary
    from tau_adapters.testing import LoopbackEngine

    from token_helpers import ForcedOracle

    name, tokenizer, template_file = request.param
    config = EpisodeConfig.build(
        domain="airline",
        split="test",
        policy="sglang:loopback",
        tokenizer=tokenizer,
        chat_template=template_file,
    )
    template = template_for(config)
    engine = LoopbackEngine(template.tokenizer, seed=5).start()
    try:
        domain = get_domain("airline")
        tasks = [domain.task("18"), domain.task("8")]
        policies = [ForcedOracle(engine.url, config, think="qwen3" in name) for _ in tasks]

        async def run_all():
            return await asyncio.gather(
                *(rollout(t, config, policy=p) for t, p in zip(tasks, policies, strict=True))
            )

        trajectories = asyncio.run(run_all())
    finally:
        engine.stop()
    folder = tmp_path_factory.mktemp("tokens") / name
    folder.mkdir()
    rows = [trajectory.to_row() for trajectory in trajectories]
    assert all(row["reward"] == 1.0 and row["transcript"] for row in rows)
    with (folder / "trajectories.jsonl").open("w") as stream:
        for row in rows:
            stream.write(json.dumps(row) + "\n")
    write_summary(folder, rows, config.model_dump())
    return folder, rows, policies, template


def test_sft_tokens_keep_the_exact_ids_and_mask_the_sampled_tokens(token_run, tmp_path) -> None:
    folder, rows, policies, _ = token_run
    out = tmp_path / "tokens.jsonl"
    assert main(["export", str(folder), "--format", "sft-tokens", "--output", str(out)]) == 0
    exported = _read(out)
    assert len(exported) == len(rows)
    for item, row, policy in zip(exported, rows, policies, strict=True):
        ids, mask = item["input_ids"], item["loss_mask"]
        assert ids == row["transcript"]["ids"]
        assert len(mask) == len(ids)
        assert mask[: row["transcript"]["prompt_len"]] == [0] * row["transcript"]["prompt_len"]
        # 1 exactly on what the engine sampled, in order.
        assert [tok for tok, m in zip(ids, mask, strict=True) if m] == [
            tok for turn in policy.generated for tok in turn
        ]


def test_sft_conversation_rerenders_to_the_kept_ids_outside_sampled_tokens(token_run, tmp_path):
    folder, rows, _, template = token_run
    out = tmp_path / "sft.jsonl"
    assert main(["export", str(folder), "--format", "sft", "--output", str(out)]) == 0
    tokenizer = template.tokenizer
    for item, row in zip(_read(out), rows, strict=True):
        kwargs = (
            json.loads(json.dumps(template.template_kwargs)) if template.template_kwargs else {}
        )
        text = tokenizer.apply_chat_template(
            item["messages"], tools=item["tools"], tokenize=False, **kwargs
        )
        rendered = tokenizer.encode(text, add_special_tokens=False)
        spans = row["transcript"]["spans"]
        last_model_end = max(end for kind, _, end in spans if kind in ("model", "close"))
        kept = row["transcript"]["ids"][:last_model_end]
        sampled = [False] * len(kept)
        for kind, start, end in spans:
            if kind == "model":
                for i in range(start, min(end, len(kept))):
                    sampled[i] = True
        matcher = difflib.SequenceMatcher(a=kept, b=rendered, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            if i2 > i1:
                inside = all(sampled[i1:i2])
            else:  # an insertion touching a sampled turn, or a trailing newline after the last
                inside = (i1 > 0 and sampled[i1 - 1]) or (i1 < len(kept) and sampled[i1])
                inside = inside or (
                    i1 == len(kept) and not tokenizer.decode(rendered[j1:j2]).strip()
                )
            assert inside, (
                f"{tag} outside sampled tokens: kept {tokenizer.decode(kept[max(0, i1 - 5) : i2 + 5])!r}"
                f" / rendered {tokenizer.decode(rendered[max(0, j1 - 5) : j2 + 5])!r}"
            )


def test_sft_model_turns_are_the_sampled_text_without_the_stop_token(token_run, tmp_path):
    """Each exported model turn is what the engine sampled for it (its span in the transcript,
    decoded by the Hugging Face tokenizer) minus the token it stopped on: the host's template
    adds the end of turn itself, so a kept stop token would be trained on twice."""
    folder, rows, _, template = token_run
    out = tmp_path / "sft.jsonl"
    assert main(["export", str(folder), "--format", "sft", "--output", str(out)]) == 0
    tokenizer = template.tokenizer
    special = set(tokenizer.all_special_tokens) | set(
        getattr(tokenizer, "added_tokens_encoder", {}) or {}
    )
    for item, row in zip(_read(out), rows, strict=True):
        ids = row["transcript"]["ids"]
        spans = [(start, end) for kind, start, end in row["transcript"]["spans"] if kind == "model"]
        assistant = [m["content"] for m in item["messages"] if m["role"] == "assistant"]
        model_turns = assistant[len(assistant) - len(spans) :]
        assert len(model_turns) == len(spans)
        for content, (start, end) in zip(model_turns, spans, strict=True):
            stop = tokenizer.decode([ids[end - 1]], skip_special_tokens=False)
            assert stop in special, f"the turn did not end on a stop token: {stop!r}"
            expected = tokenizer.decode(ids[start : end - 1], skip_special_tokens=False)
            assert content == expected
            assert not content.endswith(stop)


def test_slime_sft_tokens_rollout_trains_on_the_exported_tokens(token_run, tmp_path) -> None:
    """The rows as slime's loader hands them over (prompt = input_ids, label = loss_mask)."""
    from types import SimpleNamespace

    from slime_helpers import use_slime

    use_slime()
    from slime.utils.types import Sample
    from tau_adapters.slime.sft_tokens import generate_rollout

    folder, rows, policies, _ = token_run
    out = tmp_path / "tokens.jsonl"
    assert main(["export", str(folder), "--format", "sft-tokens", "--output", str(out)]) == 0
    exported = _read(out)
    samples = [
        Sample(prompt=row["input_ids"], label=row["loss_mask"], metadata=row["metadata"])
        for row in exported
    ]

    class Buffer:
        def get_samples(self, n):
            return [[sample] for sample in samples[:n]]

    groups = generate_rollout(SimpleNamespace(rollout_batch_size=len(samples)), 0, Buffer())
    for (sample,), row, policy in zip(groups, rows, policies, strict=True):
        sampled = [tok for turn in policy.generated for tok in turn]
        assert sample.tokens == row["transcript"]["ids"]
        # The response starts at the first sampled token; the mask covers exactly the response.
        first = row["transcript"]["ids"].index(sampled[0], row["transcript"]["prompt_len"])
        assert sample.response_length == len(sample.tokens) - first
        assert len(sample.loss_mask) == sample.response_length
        assert [t for t, m in zip(sample.tokens[first:], sample.loss_mask, strict=True) if m] == (
            sampled
        )
    bad = Sample(prompt=exported[0]["input_ids"], label=exported[0]["loss_mask"][:-1])

    class BadBuffer:
        def get_samples(self, n):
            return [[bad]]

    with pytest.raises(ValueError, match="--label-key loss_mask"):
        generate_rollout(SimpleNamespace(rollout_batch_size=1), 0, BadBuffer())


def test_tau_bench_v1_traces_have_the_wiki_and_no_greeting(tmp_path) -> None:
    """v1's agent sees the wiki as its whole system prompt and never the greeting."""
    pytest.importorskip(
        "tau_bench",
        reason="tau-bench v1 is not installed (see README: pip install tau_bench @ git+...)",
    )
    from tau_bench.envs.airline.tasks_test import TASKS
    from tau_bench.envs.airline.wiki import WIKI

    run = tmp_path / "v1"
    args = ["eval", "--domain", "tau1-airline", "--num-tasks", "3", "--output", str(run)]
    assert main(args) == 0
    out = tmp_path / "v1.jsonl"
    assert main(["export", str(run), "--output", str(out)]) == 0
    rows = _read(out)
    assert len(rows) == 3
    for row in rows:
        messages = row["messages"]
        assert messages[0] == {"role": "system", "content": WIKI}
        assert messages[1]["role"] == "user"  # no greeting before the user's opening
        index = int(row["metadata"]["task_id"].split("-")[1])
        gold = [(a.name, a.kwargs) for a in TASKS[index].actions if a.name != "respond"]
        calls = [
            (c["function"]["name"], c["function"]["arguments"])
            for m in messages
            for c in m.get("tool_calls") or []
        ]
        assert calls == gold
