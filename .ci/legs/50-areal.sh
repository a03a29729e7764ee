#!/usr/bin/env bash
# AReaL (issue 9): the real `areal` 1.0.4 from the package index, installed the light way into the
# README's venv: the package itself with --no-deps (its full dependency set pins transformers and
# CUDA stacks that conflict with the main venv and with SkyRL), then the `areal` extra, which is
# what `areal.api` (RolloutWorkflow, ModelRequest, ModelResponse, GenerationHyperparameters) and
# its remote SGLang client import. The tests drive AReaL's own RemoteSGLangEngine (CPU-only HTTP
# client) against the loopback SGLang-protocol engine; in the main run they skipped with a reason.
set -euo pipefail
. .venv/bin/activate
if ! pip install -q --no-deps "areal==1.0.4"; then
  echo "50-areal: areal 1.0.4 could not be installed from the index; the AReaL tests stay skipped"
  exit 0
fi
pip install -q -e ".[areal]"
# What AReaL's PPOTrainer, its local scheduler and FSDP engine import at module level (the recipe
# test runs the real trainer entry up to the model load; about a minute to install).
pip install -q datasets swanlab trackio wandb tensorboardX peft
python -c "from areal.api.workflow_api import RolloutWorkflow; from areal.engine.sglang_remote import RemoteSGLangEngine"
python -c "from areal import PPOTrainer; from areal.engine.fsdp_engine import FSDPEngine"
# test_areal_recipe.py starts the recipe in its own session and SIGKILLs that whole session at the
# end (AReaL's RPC workers ignore SIGTERM and can outlive the driver); about a minute.
python -m pytest -q -rs -p no:cacheprovider tests/hosts/test_areal.py tests/hosts/test_areal_interrupt.py tests/hosts/test_areal_recipe.py \
  tests/hosts/test_cross_host_parity.py tests/hosts/test_solo_hosts.py tests/hosts/test_entry_points.py
