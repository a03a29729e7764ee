"""One episode means the same thing in every host.

A seeded oracle episode per domain (airline, retail, telecom) is run through the core rollout, the
slime adapter, the AReaL workflow (AReaL's own remote SGLang client) and the SkyRL env
(``skyrl_gym.make``): the tau2 messages and the reward must be identical, and for the token-level
hosts (slime, AReaL) the token ids, loss mask and logprobs too. A second episode samples from the
tiny loopback model (teacher-forced to the oracle, so it finishes) and must give the same tokens and
the same real logprobs through core, slime and AReaL. The core rollout is the reference.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tau_adapters.errors import install_hint

from conftest import requires_tau2

pytest.importorskip("transformers", reason="cross-host parity needs the testing extra")

from slime_helpers import OracleEngine, slime_args, use_slime
from tau_adapters.agents.token_policy import TokenPolicy, load_template
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.testing import LoopbackEngine

pytestmark = requires_tau2
DOMAINS = ("airline", "retail", "telecom")


def _task(domain: str) -> Any:
    backend = get_domain(domain)
    tasks = backend.tasks(backend.default_split())
    return next(t for t in tasks if len(t.evaluation_criteria.actions or []) >= 2)


def _dump(messages: list[Any]) -> list[dict]:
    return [m.model_dump(mode="json", exclude={"timestamp"}) for m in messages]


class _ForcedTiny:
    """The tiny model teacher-forced to the oracle's turns: real logprobs, a finished episode."""

    def __init__(self, template: Any, tasks: list[Any]) -> None:
        from tau_adapters.testing.model import TinyLM

        self.model = TinyLM(len(template.tokenizer), seed=11)
        self.oracle = OracleEngine(template, tasks)

    def sample(self, input_ids: Any, **kwargs: Any) -> Any:
        kwargs["forced"] = self.oracle(list(input_ids), {})
        return self.model.sample(input_ids, **kwargs)


@pytest.fixture(scope="module", params=["oracle", "tiny-model"])
def engine(request):
    template = load_template("local:chatml")
    tasks = [_task(d) for d in DOMAINS]
    if request.param == "oracle":
        server = LoopbackEngine(template.tokenizer, canned=OracleEngine(template, tasks))
    else:
        server = LoopbackEngine(template.tokenizer, model=_ForcedTiny(template, tasks))
    server.start()
    yield request.param, server
    server.stop()


def _config(domain: str) -> EpisodeConfig:
    return EpisodeConfig.build(
        domain=domain, policy="sglang:x", tokenizer="local:chatml", max_new_tokens=512
    )


def _core(server: Any, domain: str) -> Any:
    from tau_adapters.episode.rollout import rollout

    config = _config(domain)
    policy = TokenPolicy(server.url, config)
    split = get_domain(domain).default_split()
    return asyncio.run(rollout(_task(domain), config, policy=policy, split=split))


def _slime(server: Any, domain: str, monkeypatch) -> tuple[Any, Any]:
    use_slime()
    import tau_adapters.slime as adapter
    from slime.utils.types import Sample

    import tau_adapters.episode.rollout as core_rollout

    kept: list[Any] = []
    original = core_rollout.rollout

    async def recording(*args: Any, **kwargs: Any) -> Any:
        trajectory = await original(*args, **kwargs)
        kept.append(trajectory)
        return trajectory

    monkeypatch.setattr(core_rollout, "rollout", recording)
    monkeypatch.setenv("TAU_ADAPTERS_MAX_NEW_TOKENS", "512")
    adapter.adapter._configs.clear()
    split = get_domain(domain).default_split()
    task = _task(domain)
    sample = Sample(
        group_index=0,
        index=0,
        prompt=f"{domain}/{split}/{task.id}",
        metadata={"domain": domain, "split": split, "task_id": task.id},
    )
    # slime passes --rollout-max-response-len as max_new_tokens: the whole episode fits.
    params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 65536, "sampling_seed": 0}
    args = slime_args(server, rollout_max_response_len=65536)  # no budget cut: same episode
    out = asyncio.run(adapter.generate(args, sample, params))
    return out, kept[0]


def _areal(server: Any, domain: str) -> tuple[Any, Any]:
    pytest.importorskip(
        "areal.api.workflow_api",
        reason="areal is not installed: pip install --no-deps areal==1.0.4, then the 'areal' extra",
    )
    import tau_adapters.areal as adapter
    from areal.api.cli_args import InferenceEngineConfig
    from areal.engine.sglang_remote import RemoteSGLangEngine

    engine = RemoteSGLangEngine(
        InferenceEngineConfig(experiment_name="tau", trial_name="parity", setup_timeout=30)
    )
    engine.initialize(addr=f"{server.host}:{server.port}", train_data_parallel_size=1)
    try:
        kept: list[Any] = []
        workflow = adapter.Tau2Workflow(
            {"domain": domain, "max_new_tokens": 512},
            tokenizer="local:chatml",
            on_trajectory=kept.append,
        )
        task = _task(domain)
        row = {
            "domain": domain,
            "split": get_domain(domain).default_split(),
            "task_id": task.id,
            "trial": 0,
        }
        out = asyncio.run(workflow.arun_episode(engine, row))
    finally:
        engine.destroy()
    return out, kept[0]


def _skyrl(domain: str, texts: list[str]) -> Any:
    skyrl_gym = pytest.importorskip(
        "skyrl_gym", reason="skyrl-gym is not installed: " + install_hint("skyrl")
    )
    from tau_adapters.skyrl import register

    from tau_adapters.episode.tasks import task_refs

    register()
    split = get_domain(domain).default_split()
    ref = next(r for r in task_refs(domain, split) if r.task_id == _task(domain).id)
    env = skyrl_gym.make(
        "tau2", env_config={}, extras={"extra_info": ref.to_row(), "max_turns": 60}
    )
    env.init([{"role": "user", "content": "placeholder"}])
    for text in texts:
        if env.step(text)["done"]:
            break
    env.get_metrics()
    env.close()
    return env.trajectory


@pytest.mark.parametrize("domain", DOMAINS)
def test_one_episode_is_the_same_in_every_host(engine, domain, monkeypatch) -> None:
    kind, server = engine
    core = _core(server, domain)
    assert core.status == "completed" and core.reward == 1.0, core.error
    ids = core.transcript.ids.tolist()
    prompt_len = core.transcript.prompt_len
    mask = core.transcript.loss_mask.tolist()
    logprobs = core.transcript.logprobs.tolist()
    if kind == "tiny-model":
        assert any(lp != 0.0 for lp in logprobs)  # real logprobs from the model, not zeros

    sample, slime_trajectory = _slime(server, domain, monkeypatch)
    assert sample.tokens == ids
    assert sample.response_length == len(ids) - prompt_len
    assert sample.loss_mask == mask
    assert sample.rollout_log_probs == pytest.approx(logprobs, abs=1e-6)
    assert sample.reward == core.reward
    assert slime_trajectory.seed == core.seed
    assert _dump(slime_trajectory.messages) == _dump(core.messages)

    out, areal_trajectory = _areal(server, domain)
    assert out["input_ids"][0].tolist() == ids
    assert out["loss_mask"][0].tolist() == [0] * prompt_len + mask
    assert out["logprobs"][0].tolist()[prompt_len:] == pytest.approx(logprobs, abs=1e-5)
    assert float(out["rewards"][0]) == core.reward
    assert areal_trajectory.seed == core.seed
    assert _dump(areal_trajectory.messages) == _dump(core.messages)

    # SkyRL samples the model itself and hands the env text: the same model turns as text.
    template = load_template("local:chatml")
    texts = [
        template.decode([t for t in ids[start:end] if t not in template.stop_ids])
        for kind_, start, end in [(s.kind, s.start, s.end) for s in core.transcript.spans]
        if kind_ == "model"
    ]
    skyrl_trajectory = _skyrl(domain, texts)
    assert skyrl_trajectory.reward == core.reward
    assert skyrl_trajectory.seed == core.seed
    assert _dump(skyrl_trajectory.messages) == _dump(core.messages)
