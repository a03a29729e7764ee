"""A tau-bench v1 group through the slime adapter (``generate`` and ``reward_post_process``),
against a real HTTP engine on loopback; slime itself or the stand-in (see test_slime.py)."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from slime_helpers import OracleEngine, slime_args, use_slime

from conftest import requires_tau2

pytest.importorskip(
    "tau_bench",
    reason="tau-bench v1 is not installed: pip install "
    '"tau_bench @ git+https://github.com/sierra-research/tau-bench@'
    '59a200c6d575d595120f1cb70fea53cef0632f6b"',
)
pytest.importorskip("transformers", reason="the slime adapter's tests need the testing extra")

pytestmark = requires_tau2
WHICH = use_slime()

import tau_adapters.slime as adapter  # noqa: E402
from slime.utils.types import Sample  # noqa: E402

from tau_adapters.agents.token_policy import load_template  # noqa: E402
from tau_adapters.domains import get_domain  # noqa: E402
from tau_adapters.episode.tasks import task_refs  # noqa: E402
from tau_adapters.hosts.export import export_row  # noqa: E402
from tau_adapters.testing import LoopbackEngine  # noqa: E402

GROUP = 4
DOMAIN = "tau1-retail"


def test_v1_group_through_generate_and_reward_post_process(monkeypatch) -> None:
    monkeypatch.setenv("TAU_ADAPTERS_MAX_NEW_TOKENS", "512")
    adapter.adapter._configs.clear()
    tasks = [t for t in get_domain(DOMAIN).tasks("test") if len(t.evaluation_criteria.actions) >= 3]
    tasks = tasks[:2]
    template = load_template("local:chatml")
    rows = {r.task_id: export_row(r, "slime") for r in task_refs(DOMAIN, "test")}
    samples = []
    for g, task in enumerate(tasks):
        row = rows[task.id]
        for i in range(GROUP):
            samples.append(
                Sample(
                    group_index=g,
                    index=g * GROUP + i,
                    prompt=row["input"],
                    metadata=dict(row["metadata"]),
                )
            )
    with LoopbackEngine(template.tokenizer, canned=OracleEngine(template, tasks)).start() as engine:
        args = slime_args(engine)

        async def go():
            return await asyncio.gather(
                *(
                    adapter.generate(
                        args,
                        s,
                        {"temperature": 1.0, "max_new_tokens": 65536, "sampling_seed": s.index},
                    )
                    for s in samples
                )
            )

        samples = asyncio.run(go())
    for sample in samples:
        assert sample.status == Sample.Status.COMPLETED, sample.metadata["error"]
        assert len(sample.loss_mask) == sample.response_length == len(sample.rollout_log_probs)
        expected = 1.0 if sample.index % 2 == 0 else 0.0  # odd seeds skip a write
        assert sample.reward == expected == sample.metadata["raw_reward"]
        assert sample.metadata["benchmark"] == "tau1"
        assert sample.metadata["domain"] == DOMAIN
        assert "r_actions" in sample.metadata["reward_info"]["info"]  # v1's RewardResult
    rewards, normalized = adapter.reward_post_process(args, samples)
    assert rewards == [s.reward for s in samples]
    for g in range(len(tasks)):
        group = normalized[g * GROUP : (g + 1) * GROUP]
        assert statistics.mean(group) == pytest.approx(0.0, abs=1e-6)
        assert group[0] > 0 > group[1]
