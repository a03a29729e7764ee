"""The loopback engine can be interrupted like SGLang (issue 23): ``/abort_request`` (one rid or
all), ``/v1/loads``, ``/workers``, ``/pause_generation`` / ``/continue_generation``, heavy-tailed
latency, and sampling keyed by (seed, position) so a continued request reproduces the rest."""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time

import httpx
import pytest

pytest.importorskip("torch", reason="the tiny model needs the testing extra (torch)")
pytest.importorskip("transformers", reason="the tiny model needs the testing extra")

from tau_adapters.testing import Fault, Lognormal, LoopbackEngine


@pytest.fixture(scope="module")
def engine():
    server = LoopbackEngine(seed=1).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean(engine):
    engine.fault_policy = None
    engine.latency = None
    yield
    engine.fault_policy = None
    engine.latency = None


def _body(ids, max_new, seed=9, rid=None):
    body = {
        "input_ids": ids,
        "sampling_params": {"max_new_tokens": max_new, "sampling_seed": seed, "ignore_eos": True},
        "return_logprob": True,
    }
    if rid is not None:
        body["rid"] = rid
    return body


def _tokens(answer):
    entries = answer["meta_info"]["output_token_logprobs"]
    return [e[1] for e in entries], [e[0] for e in entries]


PROMPT = [5, 17, 42, 8, 99, 3]


def test_a_continued_request_reproduces_the_uninterrupted_tokens(engine) -> None:
    with httpx.Client(base_url=engine.url, timeout=60) as client:
        whole_ids, whole_lp = _tokens(client.post("/generate", json=_body(PROMPT, 24)).json())
        engine.fault_policy = lambda e, b: Fault("abort", tokens=9)
        cut = client.post("/generate", json=_body(PROMPT, 24)).json()
        engine.fault_policy = None
        assert cut["meta_info"]["finish_reason"]["type"] == "abort"
        part1, lp1 = _tokens(cut)
        assert part1 == whole_ids[:9]
        rest = client.post("/generate", json=_body(PROMPT + part1, 24 - 9)).json()
        part2, lp2 = _tokens(rest)
        other_seed, _ = _tokens(client.post("/generate", json=_body(PROMPT, 24, seed=10)).json())
    assert part1 + part2 == whole_ids
    assert lp1 + lp2 == pytest.approx(whole_lp, abs=1e-4)  # prefix cache vs fresh prefill
    assert other_seed != whole_ids  # the seed matters (the test would pass vacuously otherwise)


def test_abort_request_cuts_one_request_or_all_and_loads_count_them(engine) -> None:
    engine.latency = Lognormal(median_s=1.5, sigma=0.0)
    answers: dict[str, dict] = {}

    def send(rid: str) -> None:
        with httpx.Client(base_url=engine.url, timeout=60) as client:
            answers[rid] = client.post("/generate", json=_body(PROMPT, 20, rid=rid)).json()

    threads = [threading.Thread(target=send, args=(rid,)) for rid in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=engine.url, timeout=60) as client:
        deadline = time.monotonic() + 20
        while client.get("/v1/loads").json()["num_running_reqs"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.5)
        assert client.post("/abort_request", json={"rid": "a"}).json() == {"aborted": 1}
        time.sleep(0.2)
        assert client.get("/v1/loads").json() == {"num_running_reqs": 2, "num_waiting_reqs": 0}
        assert client.post("/abort_request", json={"abort_all": True}).json() == {"aborted": 2}
        for thread in threads:
            thread.join(timeout=20)
        assert client.get("/v1/loads").json()["num_running_reqs"] == 0
        assert client.get("/workers").json() == {"workers": [{"url": engine.url}]}
        assert client.post("/abort_request", json={}).status_code == 400
    for rid in ("a", "b", "c"):
        meta = answers[rid]["meta_info"]
        assert meta["finish_reason"]["type"] == "abort"
        assert meta["rid"] == rid
    # Tokens come out over the 1.5 s: "a" was cut after ~0.5 s, "b" and "c" ~0.2 s later.
    n_a = len(answers["a"]["output_ids"])
    n_b = len(answers["b"]["output_ids"])
    assert 0 < n_a < n_b < 20


def test_pause_holds_new_requests_until_continue(engine) -> None:
    async def go():
        async with httpx.AsyncClient(base_url=engine.url, timeout=60) as client:
            await client.post("/pause_generation", json={})
            pending = asyncio.ensure_future(client.post("/generate", json=_body(PROMPT, 5)))
            await asyncio.sleep(0.5)
            loads = (await client.get("/v1/loads")).json()
            assert not pending.done()
            await client.post("/continue_generation", json={})
            answer = (await pending).json()
            return loads, answer

    loads, answer = asyncio.run(go())
    assert loads == {"num_running_reqs": 0, "num_waiting_reqs": 1}
    assert answer["meta_info"]["finish_reason"]["type"] == "length"
    assert len(answer["output_ids"]) == 5


def test_lognormal_latency_is_seeded_per_turn_and_heavy_tailed() -> None:
    latency = Lognormal(median_s=0.2, sigma=1.0, seed=4)
    params = {"sampling_seed": 3}
    # The same turn (seed, sampling seed, prompt length) takes the same time, whatever the order.
    assert latency.duration([1] * 50, params, 10) == latency.duration([2] * 50, params, 99)
    assert latency.duration([1] * 50, params, 10) != latency.duration([1] * 51, params, 10)
    draws = [latency.duration([0] * n, params, 1) for n in range(1, 4001)]
    median = statistics.median(draws)
    p99 = sorted(draws)[int(0.99 * len(draws))]
    # Lognormal by hand: median = median_s, p99 / median = exp(2.326 * sigma) ~ 10.2.
    assert median == pytest.approx(0.2, rel=0.08)
    assert p99 / median == pytest.approx(math.exp(2.326 * 1.0), rel=0.2)
    assert Lognormal(median_s=0.2, sigma=0.0).duration([1], {}, 5) == 0.2
