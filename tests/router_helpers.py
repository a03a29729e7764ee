"""The real ThunderAgent router as a subprocess in front of the loopback engine, for tests.

Which Python runs it, per build (both builds are the same distribution name and version, so each
lives in its own venv):
- ``TAU_ADAPTERS_THUNDERAGENT_MAIN_PYTHON`` / ``TAU_ADAPTERS_THUNDERAGENT_TOOL_IMPROVE_PYTHON``: a
  Python with that build installed (``.ci/legs/30-thunderagent.sh`` makes them);
- else, when this Python has fastapi, httpx and uvicorn, the wheel itself from
  ``$TAU_ADAPTERS_SHARED/wheels/thunderagent-<build>/`` on ``PYTHONPATH`` (a pure-Python wheel is
  importable as a zip);
- else the tests that need it skip, saying which of these is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SHARED = Path(
    os.environ.get("TAU_ADAPTERS_SHARED") or Path(__file__).resolve().parents[2] / "shared"
)
ENV_VARS = {
    "main": "TAU_ADAPTERS_THUNDERAGENT_MAIN_PYTHON",
    "tool_improve": "TAU_ADAPTERS_THUNDERAGENT_TOOL_IMPROVE_PYTHON",
}


def find_router(build: str) -> tuple[list[str], dict[str, str]] | str:
    """(command prefix, extra environment) to run ``-m ThunderAgent`` of `build`, or why not."""
    var = ENV_VARS[build]
    python = os.environ.get(var)
    if python:
        if not Path(python).exists():
            return f"${var}={python} does not exist"
        return [python], {}
    wheels = sorted((SHARED / "wheels" / f"thunderagent-{build}").glob("ThunderAgent-*.whl"))
    if not wheels:
        return (
            f"ThunderAgent {build} not available: set ${var} to a Python with it installed, or "
            f"put its wheel in {SHARED}/wheels/thunderagent-{build}/"
        )
    missing = [m for m in ("fastapi", "httpx", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"ThunderAgent {build} wheel found but this Python lacks {', '.join(missing)}: set "
            f"${var} to a Python with the wheel installed (.ci/legs/30-thunderagent.sh does)"
        )
    path = os.pathsep.join([str(wheels[0]), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return [sys.executable], {"PYTHONPATH": path}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, payload: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body


class RealRouter:
    """``python -m ThunderAgent`` of one build, on loopback, in front of `engine_url`."""

    def __init__(self, build: str, engine_url: str) -> None:
        found = find_router(build)
        if isinstance(found, str):
            raise RuntimeError(found)
        self.build = build
        self.prefix, self.env = found
        self.engine_url = engine_url
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the router
            prefix=f"thunderagent-{build}-", suffix=".log"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> RealRouter:
        command = [
            *self.prefix,
            "-m",
            "ThunderAgent",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--backends",
            self.engine_url,
            "--backend-type",
            "sglang",
            "--router",
            "tr",
            "--log-level",
            "warning",
        ]
        if self.build == "tool_improve":
            command.append("--enable-slime-adapter")
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"ThunderAgent exited at start-up:\n{self.output()}")
            try:
                if http_json(self.url + "/health", timeout=1.0)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ThunderAgent did not start in 60 s:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def live(self) -> dict[str, Any]:
        """``GET /programs``: the programs the router tracks now."""
        status, body = http_json(self.url + "/programs")
        assert status == 200, body
        return body

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        self.log.close()
