"""AReaL's interruption of a generation (issue 23), through AReaL's own engine code path.

AReaL (inclusionAI/AReaL 4aef98d8, `areal/infra/remote_inf_engine.py` ``agenerate``) pauses its
rollout, calls ``/pause_generation`` on every server (SGLang aborts what runs and answers with
the tokens emitted so far, ``finish_reason abort``), updates the weights, sets the new version,
calls ``/continue_generation`` and resumes: ``agenerate`` sends the same request again with the
emitted tokens appended to ``input_ids`` and ``max_new_tokens`` reduced by their number, and labels
each token with the client's version when its answer was read. Here the real
`RemoteSGLangEngine` runs against the loopback engine (a tiny model whose sampling is keyed by
seed and position, as SGLang's seeded sampler, and which emits its tokens over 2 s so the pause
lands mid-way). Checked: the continuation request, the transcript's ids, logprobs and loss mask
over the interrupted turn, the per-token ``versions`` AReaL trains with, and that the ids equal
the same turn generated without interruption.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from conftest import requires_tau2

pytest.importorskip("transformers", reason="the AReaL adapter's tests need the testing extra")
pytest.importorskip(
    "areal.api.workflow_api",
    reason="areal is not installed: pip install --no-deps areal==1.0.4, then the 'areal' extra",
)

import tau_adapters.areal as adapter
from areal.api.cli_args import InferenceEngineConfig
from areal.engine.sglang_remote import RemoteSGLangEngine

from tau_adapters.agents.token_policy import load_template
from tau_adapters.domains import get_domain
from tau_adapters.testing import Lognormal, LoopbackEngine

pytestmark = requires_tau2
MAX_NEW = 40


def _areal_engine(server: LoopbackEngine) -> RemoteSGLangEngine:
    engine = RemoteSGLangEngine(
        InferenceEngineConfig(
            experiment_name="tau",
            trial_name="interrupt",
            setup_timeout=30,
            request_timeout=30,
            pause_grace_period=0.2,
        )
    )
    engine.initialize(addr=f"{server.host}:{server.port}", train_data_parallel_size=1)
    return engine


def _episode(engine):
    """One mock episode through AReaL's workflow; its tensors and trajectory."""
    task = next(t for t in get_domain("mock").tasks(get_domain("mock").default_split()))
    kept = []
    workflow = adapter.Tau2Workflow(
        {"domain": "mock", "max_new_tokens": MAX_NEW, "max_steps": 2, "temperature": 1.0},
        tokenizer="local:chatml",
        on_trajectory=kept.append,
    )
    row = {"domain": "mock", "split": get_domain("mock").default_split(), "task_id": task.id}
    out = asyncio.run(workflow.arun_episode(engine, row))
    return out, kept[0]


def test_an_interrupted_turn_keeps_ids_logprobs_mask_and_gets_per_token_versions() -> None:
    template = load_template("local:chatml")
    server = LoopbackEngine(template.tokenizer, seed=3, default_seed=5).start()
    engine = _areal_engine(server)
    try:
        reference_out, reference = _episode(engine)  # no latency, no interruption
        ref_span = next(s for s in reference.transcript.spans if s.kind == "model")
        ref_ids = reference.transcript.ids.tolist()[ref_span.start : ref_span.end]
        assert len(ref_ids) >= 8

        server.latency = Lognormal(median_s=2.0, sigma=0.0)  # every request takes 2 s
        server.generate_log.clear()
        result = {}

        def run() -> None:
            result["out"], result["trajectory"] = _episode(engine)

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 30
        while not server._flights and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.9)  # about 45% of the first turn's tokens are out
        # AReaL's weight-update sequence (rl_trainer: pause, pause_generation ... update ...
        # continue_generation, set_version, resume).
        engine.pause()
        engine.pause_generation()  # blocking HTTP on all servers, as in AReaL's trainer thread
        engine.set_version(1)
        engine.continue_generation()
        engine.resume()
        worker.join(timeout=60)
        assert not worker.is_alive()
    finally:
        engine.destroy()
        server.stop()

    out, trajectory = result["out"], result["trajectory"]
    first, second = server.generate_log[0], server.generate_log[1]
    transcript = trajectory.transcript
    span = next(s for s in transcript.spans if s.kind == "model")
    prompt_ids = first["input_ids"]
    assert prompt_ids == transcript.ids.tolist()[: span.start]
    part1 = second["input_ids"][len(prompt_ids) :]
    k = len(part1)
    # (a) AReaL continued the request: prompt + the tokens before the abort, budget reduced.
    assert 0 < k < len(ref_ids)
    assert second["input_ids"] == prompt_ids + part1
    assert (
        second["sampling_params"]["max_new_tokens"]
        == first["sampling_params"]["max_new_tokens"] - k
    )
    # (b) The transcript holds both parts as one model turn, every token sampled (mask 1).
    ids = transcript.ids.tolist()[span.start : span.end]
    assert ids[:k] == part1
    response = slice(span.start - transcript.prompt_len, span.end - transcript.prompt_len)
    assert transcript.loss_mask.tolist()[response] == [1] * len(ids)
    # (d) Position-keyed sampling: the same tokens as the turn generated in one go, and the same
    # logprobs (up to the float noise of a prefix cache vs. a fresh prefill).
    assert ids == ref_ids
    ref_logprobs = reference.transcript.logprobs.tolist()[
        ref_span.start - reference.transcript.prompt_len : ref_span.end
        - reference.transcript.prompt_len
    ]
    assert transcript.logprobs.tolist()[response] == pytest.approx(ref_logprobs, abs=1e-4)
    # (c) AReaL's tensors: tokens before the pause carry version 0, the rest version 1.
    versions = out["versions"][0].tolist()[span.start : span.end]
    assert versions == [0] * k + [1] * (len(ids) - k)
    assert out["loss_mask"][0].tolist()[span.start : span.end] == [1] * len(ids)
    assert out["input_ids"][0].tolist()[span.start : span.end] == ids
    assert (reference_out["versions"][0][reference_out["loss_mask"][0].bool()] == 0).all()
