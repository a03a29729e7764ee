#!/usr/bin/env bash
# tau-bench v1 (module `tau_bench`, issue 12): not on any package index. Users install it from its
# repository at a pinned commit (README); CI installs the wheel built from that commit into the
# README's venv, with --no-deps (its environments need only litellm and pydantic, which the tau2
# extra already brings), then runs the v1 tests, which skipped with a reason in the main run.
set -euo pipefail
wheel="${TAU_ADAPTERS_SHARED:-../shared}/wheels/tau_bench-0.1.0-py3-none-any.whl"
if [ ! -f "$wheel" ]; then
  echo "20-tau-bench: $wheel not found; the tau-bench v1 tests stay skipped"
  exit 0
fi
.venv/bin/python -m pip install --quiet --no-deps "$wheel"
LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python -c "import tau_bench.envs.airline, tau_bench.envs.retail"
.venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/domains/test_tau1.py tests/domains/test_tau1_parity.py tests/evaluation/test_tau1_cli.py tests/users/test_tau1_users.py tests/users/test_tau1_pinning.py tests/agents/test_tau1_token.py \
  tests/hosts/test_tau1_slime.py tests/episode/test_think_tool.py \
  "tests/episode/test_resume.py::test_llm_users_resume_without_a_user_model_call" \
  tests/hosts/test_skyrl.py::test_tau_bench_v1_through_its_own_env_id_scores_one \
  tests/evaluation/test_warmup_export.py::test_tau_bench_v1_traces_have_the_wiki_and_no_greeting
