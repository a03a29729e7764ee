"""`tau-adapters eval --executor ray`: episodes spread over a Ray cluster.

Only where an episode runs changes. The local event loop keeps everything else: the plan, the
concurrency cap, the progress bar, the rows appended to ``trajectories.jsonl`` as episodes finish,
``--resume`` and the summary, so a Ray run writes exactly what a local run writes. Each alive node
gets ``workers_per_node`` async worker actors (one by default; more to use several cores of a node,
since an episode's CPU work holds one interpreter) that together run up to ``per_node`` episodes at
once (``rollout`` in that process, with its own parsed databases); the driver sends a light job reference (config, split, task
id, trial) and gets the finished row back.

A worker that dies (node lost, process killed, out of memory) costs only the episodes it had in
flight: each is sent again once to a fresh worker; a second death records the episode as ``failed``
with the reason, never as a model's zero. Ray is an optional dependency (``pip install
the ``ray`` extra) imported only here.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

from tau_adapters.errors import ConfigError, install_hint

RAY_HINT = f"the ray executor needs Ray: {install_hint('ray')}"
#: Seconds to wait for a cluster address to accept a connection.
CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """``HOST:PORT`` (or ``ray://HOST:PORT``) accepts a TCP connection within `timeout_s`.

    ``ray.init`` retries an address that nothing answers on for a long time; a dead or misspelt
    address fails here at once, naming it. ``auto`` and ``local`` are left to Ray.
    """
    import socket

    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(
            f"--address {address!r}: expected HOST:PORT (the head's GCS port, e.g. "
            "10.0.0.1:6379), ray://HOST:PORT, or auto"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--address {address!r}: no Ray cluster answers there ({exc.strerror or exc}); "
            "check the head node's address and port (`ray status` on the head prints it)"
        ) from None


class _EpisodeWorker:
    """Runs episodes in a Ray worker process (wrapped with ``ray.remote`` at start-up)."""

    def __init__(self) -> None:
        self.running: dict[str, Any] = {}

    def pid(self) -> int:
        return os.getpid()

    def in_flight(self) -> list[str]:
        return list(self.running)

    async def run(self, config: Any, split: str, task_id: str, trial: int) -> dict[str, Any]:
        from tau_adapters.domains import get_domain
        from tau_adapters.evaluation.run import Job, run_job

        key = f"{config.domain}/{task_id}/{trial}"
        self.running[key] = True
        try:
            task = get_domain(config.domain, retrieval_variant=config.retrieval_variant).task(
                task_id
            )
            return await run_job(Job(config, split, task, trial))
        finally:
            self.running.pop(key, None)


@dataclass
class RayExecutor:
    """Runs `Job`s on Ray worker actors; ``await executor.run(job)`` returns the episode's row."""

    address: str | None = None
    per_node: int = 32
    workers_per_node: int = 1
    max_attempts: int = 2
    num_cpus: int | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"worker_deaths": 0, "retried": 0})
    _workers: dict[str, Any] = field(default_factory=dict)
    _load: dict[str, int] = field(default_factory=dict)
    _ray: Any = None
    _owns_ray: bool = False
    _nodes: int = 0

    def start(self) -> RayExecutor:
        """Connect (or start a local cluster when no address is given) and start one worker per
        alive node; bad settings fail here, before any episode."""
        if self.per_node < 1:
            raise ConfigError(f"--per-node-concurrency must be >= 1 (got {self.per_node})")
        if self.workers_per_node < 1:
            raise ConfigError(f"--workers-per-node must be >= 1 (got {self.workers_per_node})")
        if self.address is not None:
            _check_reachable(self.address)  # Ray would retry a dead address for minutes
        try:
            import ray
        except ImportError:
            raise ConfigError(RAY_HINT) from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                if self.address is None and self.num_cpus is not None:
                    kwargs["num_cpus"] = self.num_cpus
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(
                    f"--address {self.address!r}: cannot join the cluster: {exc}"
                ) from None
            self._owns_ray = True
        # The per-node limit is kept by the driver (least-loaded dispatch under a total cap of
        # per_node x nodes); the spare slots keep the worker answering probes while it is full.
        self._actor_class = ray.remote(num_cpus=0, max_concurrency=self.per_node + 4)(
            _EpisodeWorker
        )
        nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
        if not nodes:
            raise ConfigError("the Ray cluster has no alive node")
        self._nodes = len(nodes)
        for node in nodes:
            for index in range(self.workers_per_node):
                self._spawn(f"{node}:{index}")
        return self

    def _spawn(self, slot: str) -> None:
        """A (new) worker for ``slot`` ("node id:index"), pinned to the node while it lives."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(node_id=slot.split(":")[0], soft=True)
        self._workers[slot] = self._actor_class.options(scheduling_strategy=strategy).remote()
        self._load.setdefault(slot, 0)

    @property
    def capacity(self) -> int:
        """How many episodes the cluster runs at once (the eval's concurrency cap)."""
        return self.per_node * self._nodes

    def describe(self) -> dict[str, Any]:
        """What summary.json records about where the episodes ran."""
        return {
            "kind": "ray",
            "address": self.address,
            "nodes": self._nodes,
            "workers_per_node": self.workers_per_node,
            "per_node_concurrency": self.per_node,
            **self.stats,
        }

    def workers(self) -> dict[str, Any]:
        """ "node id:index" -> worker actor handle (for tests and diagnostics)."""
        return dict(self._workers)

    async def run(self, job: Any) -> dict[str, Any]:
        from tau_adapters.evaluation.run import failed_row

        ray = self._ray
        reasons: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            node = min(self._load, key=lambda slot: self._load[slot])
            worker = self._workers[node]
            self._load[node] += 1
            try:
                ref = worker.run.remote(job.config, job.split, job.task.id, job.trial)
                return await ref
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                reasons.append(
                    f"attempt {attempt}: worker on node {node[:8]} died ({type(exc).__name__})"
                )
                self.stats["worker_deaths"] += 1
                if self._workers.get(node) is worker:
                    self._spawn(
                        node
                    )  # a fresh worker for the node; Ray places it elsewhere if gone
                if attempt < self.max_attempts:
                    self.stats["retried"] += 1
            finally:
                self._load[node] -= 1
        return failed_row(job, "ray worker died: " + "; ".join(reasons))

    def close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for worker in self._workers.values():
            with contextlib.suppress(Exception):
                ray.kill(worker)
        self._workers.clear()
        if self._owns_ray:
            ray.shutdown()


__all__ = ["RAY_HINT", "RayExecutor"]
