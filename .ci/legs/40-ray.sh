#!/usr/bin/env bash
# Leg: the Ray executor (`eval --executor ray`) against a local 2-CPU Ray cluster. Ray is an
# optional extra, so the main run skips these tests (saying so); here they run for real.
set -euo pipefail
. .venv/bin/activate
pip install -q "ray>=2.9"
python -m pytest -q tests/evaluation/test_ray_executor.py
