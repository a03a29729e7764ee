"""SkyRL's training entrypoint with the tau environments registered.

    python -m tau_adapters.skyrl.entrypoint environment.env_class=tau2 generator.max_turns=30 ...

Same arguments as ``python -m skyrl.train.entrypoints.main_base``. SkyRL builds the generator
(and steps the environments) inside its ``@ray.remote`` entrypoint task, a different process from
the one you launch, so registration happens there, as SkyRL's docs do it for custom envs, and the
tau settings (``TAU2_*`` / ``TAU_ADAPTERS_*`` variables, `tau_adapters.config.ENV_ALIASES`) are
handed to that task explicitly. The generator is `TauSkyRLGymGenerator` (failed episodes do not
train).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import ray

from skyrl.train.config import SkyRLTrainConfig
from skyrl.train.entrypoints.main_base import BasePPOExp, validate_cfg
from skyrl.train.utils import initialize_ray

#: Variables forwarded to the Ray task: the tau settings and the user simulator's API key.
FORWARDED = ("TAU2_", "TAU_ADAPTERS_", "OPENAI_API_KEY", "LITELLM_", "HOSTED_VLLM_")


class TauPPOExp(BasePPOExp):
    """SkyRL's PPO experiment with `TauSkyRLGymGenerator` as its generator."""

    def get_generator(self, cfg: Any, tokenizer: Any, inference_engine_client: Any) -> Any:
        if cfg.generator.vision_language_generator:
            return super().get_generator(cfg, tokenizer, inference_engine_client)
        from tau_adapters.skyrl.generator import TauSkyRLGymGenerator

        from skyrl.backends.skyrl_train.inference_servers.utils import resolve_policy_model_name

        return TauSkyRLGymGenerator(
            generator_cfg=cfg.generator,
            skyrl_gym_cfg=cfg.environment.skyrl_gym,
            inference_engine_client=inference_engine_client,
            tokenizer=tokenizer,
            policy_model_name=resolve_policy_model_name(cfg),
        )


def tau_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}


@ray.remote(num_cpus=1)
def skyrl_entrypoint(cfg: SkyRLTrainConfig, environment: dict[str, str]) -> None:
    os.environ.update(environment)
    from tau_adapters.skyrl import register

    register()
    TauPPOExp(cfg).run()


def main(argv: list[str] | None = None) -> None:
    cfg = SkyRLTrainConfig.from_cli_overrides(sys.argv[1:] if argv is None else argv)
    validate_cfg(cfg)
    from tau_adapters.skyrl import register

    register()  # a bad tau setting fails here, before Ray starts anything
    initialize_ray(cfg)
    ray.get(skyrl_entrypoint.remote(cfg, tau_environment()))


if __name__ == "__main__":
    main()
