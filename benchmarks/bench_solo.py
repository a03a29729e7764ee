"""Solo telecom episodes per second: tau-adapters against tau2's own solo orchestrator.

    python benchmarks/bench_solo.py --json [--tasks 100]

The same telecom ``full`` tasks, serial in one process, both sides playing the solo oracle (every
gold action as a tool call, then ``done``). Baseline: tau2 alone, as ``tau2 run --agent
llm_agent_solo --user dummy_user`` would run it: a fresh environment from tau2's registry, an
`LLMSoloAgent` whose model is replaced by the plan, `DummyUser`, `Orchestrator(solo_mode=True)`,
then `evaluate_simulation(..., solo_mode=True)`. Ours: `rollout` with ``solo_mode`` and the oracle
policy (copy-on-write environments, tau2's evaluator over our environment constructor). Both
include scoring; every episode must score 1.0 on both sides. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any


def tau2_solo_episode(task: Any) -> float:
    from tau2.agent.llm_agent import LLMSoloAgent
    from tau2.data_model.message import AssistantMessage, ToolCall
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
    from tau2.orchestrator.orchestrator import Orchestrator
    from tau2.registry import registry
    from tau2.user.user_simulator import DummyUser

    class GoldSoloAgent(LLMSoloAgent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            gold = self.task.evaluation_criteria.actions or []
            self.calls = [(a.name, dict(a.arguments)) for a in gold]

        def set_seed(self, seed: int) -> None:
            pass

        def generate_next_message(self, message: Any, state: Any) -> Any:
            name, args = self.calls.pop(0) if self.calls else (self.STOP_FUNCTION_NAME, {})
            call = ToolCall(id=f"b{len(state.messages)}", name=name, arguments=args)
            reply = self._check_if_stop_toolcall(
                AssistantMessage(role="assistant", tool_calls=[call])
            )
            state.messages.append(reply)
            return reply, state

    env = registry.get_env_constructor("telecom")(solo_mode=True)
    agent = GoldSoloAgent(
        tools=env.get_tools() + env.get_user_tools(), domain_policy=env.get_policy(), task=task
    )
    simulation = Orchestrator(
        domain="telecom",
        agent=agent,
        user=DummyUser(),
        environment=env,
        task=task,
        max_steps=200,
        max_errors=10,
        seed=300,
        solo_mode=True,
    ).run()
    info = evaluate_simulation(
        simulation=simulation,
        task=task,
        evaluation_type=EvaluationType.ALL,
        solo_mode=True,
        domain="telecom",
    )
    return float(info.reward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--tasks", type=int, default=100, help="first N telecom `full` tasks")
    opts = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.rollout import rollout

    backend = get_domain("telecom")
    tasks = backend.tasks("full")[: opts.tasks]
    config = EpisodeConfig.build(domain="telecom", split="full", solo_mode=True)
    # Warm both sides once (imports, tau2's task file, our parsed database), not measured.
    tau2_solo_episode(tasks[0])
    asyncio.run(rollout(tasks[0], config))

    start = time.perf_counter()
    baseline = [tau2_solo_episode(task) for task in tasks]
    tau2_s = time.perf_counter() - start

    async def ours() -> list[float]:
        return [(await rollout(task, config)).reward for task in tasks]

    start = time.perf_counter()
    rewards = asyncio.run(ours())
    ours_s = time.perf_counter() - start
    if baseline != [1.0] * len(tasks) or rewards != [1.0] * len(tasks):
        sys.exit("a solo oracle episode did not score 1.0; the comparison would mean nothing")
    result = {
        "benchmark": "solo_telecom_episodes_per_s",
        "tasks": len(tasks),
        "tau2_episodes_per_s": round(len(tasks) / tau2_s, 3),
        "ours_episodes_per_s": round(len(tasks) / ours_s, 3),
        "ratio": round(tau2_s / ours_s, 3),
    }
    print(json.dumps(result) if opts.json else result)


if __name__ == "__main__":
    main()
