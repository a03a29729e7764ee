"""The AReaL recipe's entry, run as a user runs it: ``python -m tau_adapters.areal.train_tau2
--config adapters/areal/config_qwen3_tau2.yaml ...`` with AReaL's own single-controller trainer
(``scheduler.type: local``). On a machine without GPUs it must get past AReaL's worker
configuration (the experiment config, a dataclass, is rebuilt in each worker from its import path)
and stop only where the model is loaded. Runs in the AReaL CI leg (.ci/legs/50-areal.sh), which
installs what AReaL's trainer imports; elsewhere it skips with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the recipe test needs the testing extra")
pytest.importorskip(
    "areal.api.workflow_api",
    reason="areal is not installed: pip install --no-deps areal==1.0.4, then the 'areal' extra",
)
try:  # what AReaL's trainer and its FSDP engine import at module level
    import datasets  # noqa: F401
    from areal import PPOTrainer  # noqa: F401
    from areal.engine.fsdp_engine import FSDPEngine  # noqa: F401
except Exception as exc:  # pragma: no cover - depends on the leg's installs
    pytest.skip(
        f"AReaL's trainer cannot be imported ({exc!r}): the AReaL leg installs datasets swanlab "
        "trackio wandb tensorboardX peft for it",
        allow_module_level=True,
    )

RECIPE = Path(__file__).resolve().parents[2] / "adapters" / "areal" / "config_qwen3_tau2.yaml"
#: AReaL's driver lines that end the run: the model load failing in a worker (what this test
#: expects on CPU), or the worker configuration failing (the bug this test guards).
STOP = (
    "Engine method 'initialize' failed",
    "Failed to call method 'initialize'",
    "Failed to configure worker",
)
LIMIT_S = 240.0


def _tiny_model(folder: Path) -> Path:
    """A two-layer Qwen3 with the real Qwen3 tokenizer: enough for AReaL to reach the load."""
    assets = os.environ.get("TAU_ADAPTERS_TEST_ASSETS")
    source = Path(assets or "/nonexistent") / "qwen3-4b-instruct-2507"
    if not source.is_dir():
        pytest.skip(f"no Qwen3 tokenizer at {source}: set TAU_ADAPTERS_TEST_ASSETS")
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=4096,
    )
    Qwen3ForCausalLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _session_pids(sid: int) -> list[int]:
    """Processes still alive in session `sid` (the driver's, which AReaL's workers inherit)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            found.append(int(entry.name))
    return found


def _kill_session(sid: int) -> None:
    """SIGKILL the whole session: AReaL's RPC workers ignore SIGTERM and can outlive the
    driver (then re-parented, but still in this session)."""
    for _ in range(20):
        pids = _session_pids(sid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.25)


def test_recipe_entry_gets_past_worker_configuration_to_the_model_load(tmp_path) -> None:
    model = _tiny_model(tmp_path / "tiny-qwen3")
    rows = tmp_path / "tau2_rows.jsonl"
    rows.write_text(  # the shape `tau-adapters tasks export --format areal` writes
        "".join(
            json.dumps({"domain": "airline", "split": "test", "task_id": str(k)}) + "\n"
            for k in range(2)
        )
    )
    root = tmp_path / "areal-fs"
    (root / "nr").mkdir(parents=True)
    overrides = [
        f"actor.path={model}",
        f"train_dataset.path={rows}",
        f"valid_dataset.path={rows}",
        "train_dataset.batch_size=2",
        "valid_dataset.batch_size=2",
        f"cluster.fileroot={root}",
        f"cluster.name_resolve.nfs_record_root={root / 'nr'}",
        "cluster.n_gpus_per_node=2",
        "actor.backend=fsdp:d1",  # one worker, not four: CI machines are small
        "rollout.backend=sglang:d1",
        "experiment_name=ci",
        "trial_name=t0",
    ]
    command = [sys.executable, "-m", "tau_adapters.areal.train_tau2", "--config", str(RECIPE)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    driver = subprocess.Popen(
        [*command, *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,  # its own session: every worker it starts can be killed with it
    )
    lines: list[str] = []
    try:
        assert driver.stdout is not None
        watch = selectors.DefaultSelector()
        watch.register(driver.stdout, selectors.EVENT_READ)
        while time.monotonic() - started < LIMIT_S:
            if not watch.select(timeout=1.0):
                if driver.poll() is not None:
                    break
                continue
            line = driver.stdout.readline()
            if not line:
                break
            lines.append(line)
            if any(stop in line for stop in STOP):
                time.sleep(2.0)  # the rest of the traceback
                break
    finally:
        _kill_session(driver.pid)
        driver.wait(timeout=30)
    out = "".join(lines)
    tail = out[-3000:]
    # AReaL rebuilt the config class in the worker (it is importable) and configured it.
    assert "Failed to deserialize dataclass" not in out, tail
    assert "'dict' object has no attribute 'seed'" not in out, tail
    assert "Configuration successfully on worker 'actor/0'" in out, tail
    # ... and the run stopped where the model is loaded (engine initialisation), not before.
    # Which load error shows up on CPU depends on transformers and what is installed.
    assert "Failed to call method 'initialize' on worker 'actor/0'" in out or (
        "Engine method 'initialize' failed" in out
    ), tail
    assert _session_pids(driver.pid) == []  # nothing of the run is left behind
