"""slime's asynchronous rollout step with over-sampling and partial rollout, as a stand-in.

Written (not copied) from the behaviour of slime/rollout/sglang_rollout.py at THUDM/slime
624b824a898ab0ec1fcb4d373004c7f3852bf515 (file:line in /work/notes/23-partial.md):

- `generate_rollout_async` (374-470): keeps ``over_sampling_batch_size`` groups in flight until
  ``rollout_batch_size`` groups are done, then `abort` and ``state.reset()``;
- `abort` (339-371): sets ``GenerateState.aborted``, lists the router's workers
  (``GET /workers``), ``POST /abort_request {"abort_all": true}`` to each, polls
  ``GET /v1/loads`` until idle, waits for every pending group (cancelling none) and, with
  ``--partial-rollout`` only, returns them (samples with a response get
  ``metadata["start_rollout_id"]``) for the data buffer;
- `generate_and_rm` (224-289): with ``--partial-rollout`` and
  ``--mask-offpolicy-in-partial-rollout`` a sample with a response gets its loss mask zeroed
  before the generate function runs; COMPLETED/TRUNCATED samples come back as they are; after
  the abort a sample is marked ABORTED without a call; ``max_new_tokens`` stays
  ``rollout_max_response_len`` for custom generate functions;
- `generate_and_rm_group` (297-336): a ``session_id`` is set once and survives the buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import uuid
from typing import Any

from slime.utils.types import Sample

#: Stand-in only (slime has no such list): groups that finished in the same wait as the last
#: needed one and that slime drops ("we have not stored all the unused samples back to the data
#: buffer"), kept so the benchmark's token ledger can name them.
DROPPED: list[list[Sample]] = []


class GenerateState:
    """One per process (slime's is a singleton built from args)."""

    _instance: GenerateState | None = None

    def __new__(cls, args: Any = None) -> GenerateState:
        if cls._instance is None:
            instance = super().__new__(cls)
            instance._init(args)
            cls._instance = instance
        return cls._instance

    def _init(self, args: Any) -> None:
        self.args = args
        self.semaphore = asyncio.Semaphore(getattr(args, "sglang_server_concurrency", 512))
        self.sampling_params = {
            "temperature": getattr(args, "rollout_temperature", 1.0),
            "top_p": getattr(args, "rollout_top_p", 1.0),
            "max_new_tokens": args.rollout_max_response_len,
        }
        self.reset()

    def reset(self) -> None:
        self.remaining_batch_size = 0
        self.pendings: set[asyncio.Task] = set()
        self.aborted = False

    @classmethod
    def forget(cls) -> None:
        """Tests only: a fresh state for the next event loop."""
        cls._instance = None


def _load(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


async def generate_and_rm(
    args: Any, sample: Sample, sampling_params: dict[str, Any], evaluation: bool = False
) -> Sample:
    if (
        getattr(args, "partial_rollout", False)
        and getattr(args, "mask_offpolicy_in_partial_rollout", False)
        and sample.response_length > 0
    ):
        sample.loss_mask = [0] * sample.response_length
    if sample.status in (Sample.Status.COMPLETED, Sample.Status.TRUNCATED):
        return sample
    state = GenerateState(args)
    async with state.semaphore:
        if state.aborted:
            sample.status = Sample.Status.ABORTED
            return sample
        fn = _load(args.custom_generate_function_path)
        kwargs = (
            {"evaluation": evaluation} if "evaluation" in inspect.signature(fn).parameters else {}
        )
        sample = await fn(args, sample, sampling_params, **kwargs)
    return sample


async def generate_and_rm_group(
    args: Any, group: list[Sample], sampling_params: dict[str, Any], evaluation: bool = False
) -> list[Sample]:
    state = GenerateState(args)
    if state.aborted:
        return group
    for sample in group:
        if sample.session_id is None:
            sample.session_id = str(uuid.uuid4())
    return list(
        await asyncio.gather(
            *(generate_and_rm(args, s, sampling_params.copy(), evaluation) for s in group)
        )
    )


def submit_generate_tasks(state: GenerateState, groups: list[list[Sample]]) -> None:
    for group in groups:
        state.pendings.add(
            asyncio.create_task(generate_and_rm_group(state.args, group, state.sampling_params))
        )
    state.remaining_batch_size += len(groups)


def _requests_of(loads: Any) -> int:
    if isinstance(loads, list):
        return sum(_requests_of(x) for x in loads)
    if not isinstance(loads, dict):
        return 0
    for key in ("num_reqs", "num_total_reqs", "total_reqs"):
        if key in loads:
            return int(loads[key])
    if "num_running_reqs" in loads or "num_waiting_reqs" in loads:
        return int(loads.get("num_running_reqs", 0)) + int(loads.get("num_waiting_reqs", 0))
    return _requests_of(loads.get("loads"))


async def abort_servers_until_idle(urls: list[str], poll_s: float = 0.05) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            for url in urls:
                with contextlib.suppress(httpx.HTTPError):  # slime only logs it
                    await client.post(f"{url}/abort_request", json={"abort_all": True})
            try:
                loads = [(await client.get(f"{u}/v1/loads?include=core")).json() for u in urls]
            except httpx.HTTPError:
                return  # slime gives up quietly
            if _requests_of(loads) <= 0:
                return
            await asyncio.sleep(poll_s)


async def abort(args: Any, rollout_id: int) -> list[list[Sample]]:
    import httpx

    state = GenerateState(args)
    state.aborted = True
    router = f"http://{args.sglang_router_ip}:{args.sglang_router_port}"
    async with httpx.AsyncClient(timeout=30) as client:
        workers = (await client.get(f"{router}/workers")).json()["workers"]
    await abort_servers_until_idle([w["url"] for w in workers])
    aborted: list[list[Sample]] = []
    while state.pendings:
        done, state.pendings = await asyncio.wait(
            state.pendings, return_when=asyncio.FIRST_COMPLETED
        )
        if not getattr(args, "partial_rollout", False):
            continue
        for task in done:
            group = task.result()
            for sample in group:
                if sample.response and "start_rollout_id" not in sample.metadata:
                    sample.metadata["start_rollout_id"] = rollout_id
            aborted.append(group)
    return aborted


async def generate_rollout_async(
    args: Any, rollout_id: int, data_source: Any
) -> tuple[list[list[Sample]], list[list[Sample]]]:
    state = GenerateState(args)
    target = args.rollout_batch_size
    data: list[list[Sample]] = []
    while len(data) < target:
        while state.remaining_batch_size < target:
            submit_generate_tasks(state, data_source(args.over_sampling_batch_size))
        done, state.pendings = await asyncio.wait(
            state.pendings, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            group = task.result()
            if len(data) < target:
                data.append(group)
            else:  # more finished at once than needed: slime drops them
                DROPPED.append(group)
    aborted = await abort(args, rollout_id)
    state.reset()
    return data, aborted


async def generate_rollout(args: Any, rollout_id: int, data_source: Any) -> list[list[Sample]]:
    """One step: the groups to train on; aborted ones go back to the buffer."""
    data, aborted = await generate_rollout_async(args, rollout_id, data_source)
    if aborted:
        data_source.add_samples(aborted)
    return data
