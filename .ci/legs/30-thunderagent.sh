#!/usr/bin/env bash
# ThunderAgent: episodes through the REAL routers in front of the loopback engine.
# Each build gets a venv of its own (both wheels are ThunderAgent 0.1.0: one venv cannot hold both):
#   main          -> openai: policy (POST /v1/chat/completions with program_id)
#   tool_improve  -> sglang: policy (POST /generate, started with --enable-slime-adapter)
# The tests run in the main .venv and start each router with the Python named by
# TAU_ADAPTERS_THUNDERAGENT_{MAIN,TOOL_IMPROVE}_PYTHON.
set -euo pipefail
wheels="${TAU_ADAPTERS_SHARED:-$(cd .. && pwd)/shared}/wheels"
declare -A var=([main]=TAU_ADAPTERS_THUNDERAGENT_MAIN_PYTHON [tool_improve]=TAU_ADAPTERS_THUNDERAGENT_TOOL_IMPROVE_PYTHON)
found=()
for build in main tool_improve; do
  wheel=$(ls "$wheels/thunderagent-$build"/ThunderAgent-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "30-thunderagent: no ThunderAgent $build wheel in $wheels/thunderagent-$build/: its tests skip"
    continue
  fi
  venv=".venv/thunderagent-$build"   # inside .venv: .ci/run's fresh-venv step removes it too
  rm -rf "$venv"
  .venv/bin/python -m venv "$venv"
  "$venv/bin/pip" install -q "$wheel"   # pulls fastapi, httpx, uvicorn from the package index
  export "${var[$build]}=$PWD/$venv/bin/python"
  found+=("$build")
done
if [ "${#found[@]}" -eq 0 ]; then
  echo "30-thunderagent: ThunderAgent wheels absent; nothing to run"
  exit 0
fi
# A router whose venv was made here must run: its tests fail instead of skipping.
export TAU_ADAPTERS_REQUIRE_THUNDERAGENT="$(IFS=,; echo "${found[*]}")"
.venv/bin/python -m pytest -q -rs tests/agents/test_thunderagent.py
