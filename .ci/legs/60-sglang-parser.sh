#!/usr/bin/env bash
# The sglang-delegating parser against the real sglang's function-call detectors.
#
# sglang's full dependency set (CUDA kernels, flashinfer, ...) is not needed for its tool-call
# parsers: the wheel is installed without dependencies, plus what its function-call modules import
# (measured for sglang 0.5.23: orjson, pybase64, msgspec, pyzmq, ipython, partial_json_parser,
# xgrammar, triton, requests; triton alone is ~290 MB to download, ~1 GB installed). They go into a
# throw-away overlay venv over .venv, so later legs and the main run never see sglang.
set -euo pipefail
SGLANG_VERSION=0.5.23
main_python=.venv/bin/python
if [ ! -x "$main_python" ]; then
  echo "sglang-parser leg: no .venv here; skipped"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$main_python" -m venv "$work/venv"
purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
# addsitedir (not a bare path) so that .venv's own .pth files (the editable install) apply too.
echo "import site; site.addsitedir('$(purelib "$main_python")')" \
  > "$(purelib "$work/venv/bin/python")/_tau_adapters_main_venv.pth"
pip=("$work/venv/bin/python" -m pip install -q --disable-pip-version-check)
if ! "${pip[@]}" --no-deps "sglang==$SGLANG_VERSION" ||
  ! "${pip[@]}" orjson pybase64 msgspec pyzmq ipython partial_json_parser xgrammar triton requests; then
  echo "sglang-parser leg: sglang could not be installed from the package index; skipped"
  exit 0
fi
# Installed but not importable is a real failure (the tests below would only skip).
"$work/venv/bin/python" -c "import sglang.srt.function_call.function_call_parser"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests/parsers/test_parsers.py -k sglang
