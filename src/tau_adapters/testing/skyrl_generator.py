"""SkyRL's own generator over the tau2 env, on CPU, against the loopback engine (by hand).

    python -m tau_adapters.testing.skyrl_generator --tokenizer DIR [--tasks 2] [--policy oracle]

Needs SkyRL's trainer package (``pip install skyrl`` plus loguru, tqdm, orjson, pybase64,
jaxtyping, tensordict; Python >= 3.12) next to ``tau-adapters[tau2,skyrl,testing]``. What runs is
SkyRL's: ``PromptDataset`` reads the rows ``tau-adapters tasks export --format skyrl`` writes,
``SkyRLGymGenerator.generate`` (here `TauSkyRLGymGenerator`) runs its agent loop, tokenizes with
the model's chat template, calls the engine through its ``RemoteInferenceClient`` (vLLM's
``/inference/v1/generate``) and steps our env from its thread pool. The engine is
`tau_adapters.testing.LoopbackEngine` on loopback (GPU engines cannot run here):

- ``--policy oracle``: the engine answers each turn with the oracle's text for the episode's task
  (identified by the user's opening message in the prompt), so every episode must score 1.0;
- ``--policy tiny``: the tiny random model samples for real; episodes end by the turn limit,
  too many errors or an empty turn, and none may crash the batch.

Prints one JSON summary; exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, help="local Hugging Face tokenizer folder")
    parser.add_argument("--tasks", type=int, default=2, help="tasks per domain")
    parser.add_argument("--domains", default="airline,retail,telecom")
    parser.add_argument("--policy", choices=["oracle", "tiny"], default="oracle")
    parser.add_argument("--max-turns", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=512)
    args = parser.parse_args()

    import skyrl
    from skyrl.backends.skyrl_train.inference_servers.remote_inference_client import (
        RemoteInferenceClient,
    )
    from skyrl.train.config import GeneratorConfig, SkyRLGymConfig
    from skyrl.train.dataset import PromptDataset
    from transformers import AutoTokenizer

    from tau_adapters.episode.tasks import TaskRef
    from tau_adapters.episode.text_episode import oracle_texts
    from tau_adapters.hosts.export import export_row
    from tau_adapters.skyrl import register
    from tau_adapters.skyrl.env import Tau2Env
    from tau_adapters.skyrl.generator import TauSkyRLGymGenerator
    from tau_adapters.testing import LoopbackEngine

    register()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    domains = args.domains.split(",")
    from tau_adapters.episode.tasks import task_refs

    # The oracle engine knows the episode by the user's opening message in the prompt, so take
    # tasks whose openings differ (some telecom tasks share theirs).
    openings: dict[str, list[str]] = {}
    refs = []
    for domain in domains:
        taken = 0
        for ref in task_refs(domain, "test"):
            if taken == args.tasks:
                break
            env = Tau2Env(env_config={}, extras={"extra_info": ref.to_row(), "max_turns": 100})
            chat, _ = env.init([])
            env.close()
            opening = chat[2]["content"].strip() if len(chat) > 2 else ref.task_id
            if any(opening in o or o in opening for o in openings):
                continue
            openings[opening] = oracle_texts(ref.load(), "hermes")
            refs.append(ref)
            taken += 1
    rows = [export_row(ref, "skyrl") for ref in refs]
    folder = Path(tempfile.mkdtemp(prefix="tau-skyrl-"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), folder / "tasks.parquet")
    dataset = PromptDataset(
        datasets=[str(folder / "tasks.parquet")],
        tokenizer=tokenizer,
        max_prompt_length=32768,
        num_workers=1,
    )
    items = [dataset[i] for i in range(len(dataset))]

    def oracle(input_ids: list[int], body: dict[str, Any]) -> list[int]:
        prompt = tokenizer.decode(input_ids)
        texts = next((t for opening, t in openings.items() if opening in prompt), None)
        if texts is None:
            return [
                *tokenizer.encode("I am lost.", add_special_tokens=False),
                tokenizer.eos_token_id,
            ]
        turn = prompt.count("<|im_start|>assistant") - 2  # the greeting and the open turn
        text = texts[min(turn, len(texts) - 1)]
        return [*tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]

    engine = LoopbackEngine(tokenizer, canned=oracle if args.policy == "oracle" else None)
    engine.start()
    try:
        client = RemoteInferenceClient(
            proxy_url=engine.url, server_urls=[engine.url], data_parallel_size=1, model_name="tiny"
        )
        generator_cfg = GeneratorConfig(
            max_turns=args.max_turns, batched=False, max_input_length=32768
        )
        generator = TauSkyRLGymGenerator(
            generator_cfg=generator_cfg,
            skyrl_gym_cfg=SkyRLGymConfig(max_env_workers=32),
            inference_engine_client=client,
            tokenizer=tokenizer,
            policy_model_name="tiny",
        )
        batch = {
            "prompts": [item[0] for item in items],
            "env_classes": [item[1] for item in items],
            "env_extras": [item[2] for item in items],
            "sampling_params": {
                "max_tokens": args.max_tokens,
                "temperature": 1.0,
                "logprobs": 0,
            },
            "trajectory_ids": None,
            "batch_metadata": None,
        }

        async def run() -> Any:
            try:
                return await generator.generate(batch, disable_tqdm=True)
            finally:
                closing = getattr(client, "aclose", None) or getattr(
                    client._generate_client, "aclose", None
                )
                if closing is not None:
                    await closing()

        output = asyncio.run(run())
    finally:
        engine.stop()

    rewards = [r if isinstance(r, float) else sum(r) for r in output["rewards"]]
    env_metrics = [
        {k: v for k, v in m.items() if not k.startswith("termination/")}
        for m in output.get("env_metrics") or []
    ]
    summary = {
        "skyrl_version": getattr(skyrl, "__version__", "unknown"),
        "policy": args.policy,
        "episodes": len(rewards),
        "rewards": rewards,
        "stop_reasons": output.get("stop_reasons"),
        "response_tokens": [len(r) for r in output["response_ids"]],
        "masked_samples": sum(1 for m in output["loss_masks"] if m and not any(m)),
        "env_metrics": env_metrics,
        "rollout_metrics": {
            k: v
            for k, v in (output.get("rollout_metrics") or {}).items()
            if "env" in k or "tau2" in k
        },
        "engine_requests": dict(engine.requests),
        "tasks": [TaskRef(**item[2]["extra_info"]).to_row() for item in items],
    }
    print(json.dumps(summary, indent=2, default=str))
    ok = len(rewards) == len(items)
    if args.policy == "oracle":
        ok = ok and all(r == 1.0 for r in rewards)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
