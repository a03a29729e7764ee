"""SkyRL's own generator, with tau2's do-not-train flag honoured (imports SkyRL's trainer).

SkyRL's ``SkyRLGymGenerator`` ignores step metadata; the only per-sample channel from the env to
the trainer is ``env.get_metrics()``, kept as ``TrajectoryOutput.env_metrics``. This subclass
uses SkyRL's ``_post_process_agent_loop_output`` hook to zero the loss mask of samples whose
``env_metrics["remove_sample"]`` is set (user simulator down, environment error, ``on_malformed=
remove``): their reward is 0, and without the mask they would train as the model's failure.
"""

from __future__ import annotations

from typing import Any

from loguru import logger
from tau_adapters.skyrl.env import mask_removed_sample

from skyrl.train.generators.skyrl_gym_generator import SkyRLGymGenerator


class TauSkyRLGymGenerator(SkyRLGymGenerator):
    """``SkyRLGymGenerator`` that leaves failed tau2 episodes out of the loss."""

    removed_samples = 0

    def _post_process_agent_loop_output(
        self, agent_loop_output: Any, env_extras: dict[str, Any], trajectory_id: Any
    ) -> Any:
        output = super()._post_process_agent_loop_output(
            agent_loop_output, env_extras, trajectory_id
        )
        if mask_removed_sample(output):
            self.removed_samples += 1
            info = env_extras.get("extra_info") or {}
            logger.warning(
                f"tau2 sample left out of training (loss mask zeroed): {info}; "
                f"{self.removed_samples} so far"
            )
        return output
