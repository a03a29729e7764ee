"""tau-bench v1's user strategies, pinned: fingerprint (strategy and its prompt), seeds, and the
reply cache, against a real OpenAI-compatible HTTP server on loopback (both transports)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from conftest import requires_tau2

pytest.importorskip(
    "tau_bench",
    reason="tau-bench v1 is not installed: pip install "
    '"tau_bench @ git+https://github.com/sierra-research/tau-bench@'
    '59a200c6d575d595120f1cb70fea53cef0632f6b"',
)
pytest.importorskip("starlette", reason="the loopback server needs the testing extra")

from tau_adapters.config import EpisodeConfig
from tau_adapters.evaluation.report import compare
from tau_adapters.evaluation.run import evaluate
from tau_adapters.testing import LoopbackEngine

pytestmark = requires_tau2

DOMAIN, TASKS, TRIALS, SEED = "tau1-retail", 2, 2, 7
VOLATILE = ("duration_s", "timings", "turn_timings", "usage")


def v1_user(body):
    """v1's user model, well behaved: the instruction, then ###STOP###; supervisors say true."""
    first = body["messages"][0]["content"]
    if first.startswith("You are a supervisor"):
        if "Reflection:" in first:
            return {"role": "assistant", "content": "Reflection: fine.\nResponse:\nPlease go on."}
        return {"role": "assistant", "content": "true"}
    instruction = re.search(r"Instruction: (.*)\n", first).group(1)
    spoke = any(m["role"] == "assistant" for m in body["messages"][1:])
    text = "###STOP###" if spoke else instruction
    if "User Response:" in first:  # the react strategy's format
        text = f"Thought:\nI say what I need.\nUser Response:\n{text}"
    return {"role": "assistant", "content": text}


@pytest.fixture()
def server():
    engine = LoopbackEngine(canned=lambda ids, body: [0]).start()
    engine.chat_responder = v1_user
    engine.served_model = "v1-user-model"
    yield engine
    engine.stop()


def _evaluate(config, output: Path):
    return asyncio.run(
        evaluate(
            [DOMAIN],
            config,
            output=output,
            split="test",
            num_trials=TRIALS,
            num_tasks=TASKS,
            concurrency=4,
            show_progress=False,
        )
    )


def _rows(output: Path):
    rows = [json.loads(line) for line in (output / "trajectories.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["task_id"], r["trial"]))


def _stable(rows):
    out = []
    for row in rows:
        row = {k: v for k, v in row.items() if k not in VOLATILE}
        row["messages"] = [
            {k: v for k, v in m.items() if k != "timestamp"} for m in row["messages"]
        ]
        out.append(row)
    return out


@pytest.mark.parametrize("strategy", ["llm", "react", "verify", "reflection"])
def test_v1_strategy_fingerprint_seed_and_cache(server, tmp_path, strategy) -> None:
    config = EpisodeConfig.build(
        domain=DOMAIN,
        user=f"openai:{server.url}/v1",
        user_model="user-sim",
        user_strategy=strategy,
        seed=SEED,
        user_cache=str(tmp_path / "cache"),
    )
    first = _evaluate(config, tmp_path / "a")
    asked = server.requests["chat"]
    rows = _rows(tmp_path / "a")
    assert all(row["reward"] == 1.0 for row in rows), [row["error"] for row in rows]
    # Every call of v1's strategy (supervisors included) carried the episode's seed.
    assert {body["seed"] for body in server.chat_log} == {SEED, SEED + 1}
    fingerprint = rows[0]["user_fingerprint"]
    assert fingerprint["strategy"] == strategy and fingerprint["benchmark"] == "tau1"
    assert fingerprint["model_reported"] == "v1-user-model"
    assert importlib.metadata.version("tau_bench") in fingerprint["benchmark_version"]
    assert "59a200c6d575" in fingerprint["benchmark_version"]  # the pinned commit
    assert fingerprint["benchmark_version"] == rows[0]["benchmark_version"]
    assert first["user"]["cache"]["misses"] == asked
    second = _evaluate(config, tmp_path / "b")
    assert server.requests["chat"] == asked  # replayed: no request reached the server
    assert second["user"]["cache"]["hits"] == asked
    assert _stable(_rows(tmp_path / "b")) == _stable(rows)


def test_strategies_have_different_prompt_hashes_and_the_report_names_the_change(
    server, tmp_path
) -> None:
    runs = {}
    for strategy in ("llm", "react"):
        config = EpisodeConfig.build(
            domain=DOMAIN,
            user=f"openai:{server.url}/v1",
            user_model="user-sim",
            user_strategy=strategy,
            seed=SEED,
        )
        _evaluate(config, tmp_path / strategy)
        runs[strategy] = _rows(tmp_path / strategy)
    entry = compare(runs["llm"], runs["react"])["user_fingerprint"][DOMAIN]
    fields = {diff["field"]: (diff["a"], diff["b"]) for diff in entry["differences"]}
    assert entry["same"] is False
    assert set(fields) == {"strategy", "prompt_sha256"}
    assert fields["strategy"] == ("llm", "react")


def test_v1_through_litellm_replays_from_the_cache(server, tmp_path, monkeypatch) -> None:
    pytest.importorskip("litellm", reason="litellm is not installed")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    config = EpisodeConfig.build(
        domain=DOMAIN,
        user="litellm:openai/user-sim",
        user_api_base=f"{server.url}/v1",
        user_strategy="verify",
        seed=SEED,
        user_cache=str(tmp_path / "cache"),
    )
    _evaluate(config, tmp_path / "a")
    asked = server.requests["chat"]
    assert asked > 0 and {body["seed"] for body in server.chat_log} == {SEED, SEED + 1}
    assert _rows(tmp_path / "a")[0]["user_fingerprint"]["model_reported"] == "v1-user-model"
    second = _evaluate(config, tmp_path / "b")
    assert server.requests["chat"] == asked and second["user"]["cache"]["hits"] == asked
    assert _stable(_rows(tmp_path / "a")) == _stable(_rows(tmp_path / "b"))
