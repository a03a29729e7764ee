"""SkyRL adapter: tau2 as a skyrl-gym text environment, registered in one call.

    from tau_adapters.skyrl import register
    register()                      # env id "tau2" (idempotent)
    env = skyrl_gym.make("tau2", env_config={...}, extras=row_extras)

The environment (`Tau2Env`) is a real `skyrl_gym.envs.base_text_env.BaseTextEnv`: synchronous, as
SkyRL's generator calls it from its thread pool, safe from many threads at once, and it never
raises. Episodes run in the core (`tau_adapters.episode.text_episode`); this package only translates
SkyRL's types. The trainer-side pieces (`entrypoint`, `generator`) import SkyRL's trainer package
``skyrl`` and are loaded only when used.
"""

from __future__ import annotations

from tau_adapters.skyrl.env import (
    ENV_CLASSES,
    Tau2Env,
    config_from_env_config,
    mask_removed_sample,
    register,
    task_ref_from_extras,
)

__all__ = [
    "ENV_CLASSES",
    "Tau2Env",
    "config_from_env_config",
    "mask_removed_sample",
    "register",
    "task_ref_from_extras",
]
