#!/usr/bin/env bash
# Type check the core (issue 20): mypy over src/tau_adapters with the settings in pyproject.toml.
set -euo pipefail
. .venv/bin/activate
python -m mypy --version
python -m mypy
