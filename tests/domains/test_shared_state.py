"""Nothing an episode returns or leaves behind is shared with the tasks, the base database or the
next episode: returned objects are copies, class-level tau2 state is per episode, and the tools run
uncopied on the base database (tau2's READ tools) really leave it as it was."""

from __future__ import annotations

import asyncio
import copy
import enum
import json
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.episode.session import Session

from conftest import requires_tau2

pytestmark = requires_tau2


# -- point 6: returned trajectories share nothing mutable with the task ------------------------
def mutable_ids(*roots: Any) -> dict[int, Any]:
    """Every dict, list, set and pydantic model reachable from `roots`, by id (kept alive)."""
    found: dict[int, Any] = {}
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, enum.Enum, type(None))):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            found[id(obj)] = obj
            stack.extend(dict.keys(obj))
            stack.extend(dict.values(obj))
        elif isinstance(obj, (list, set)):
            found[id(obj)] = obj
            stack.extend(obj)
        elif isinstance(obj, tuple):
            stack.extend(obj)
        elif isinstance(obj, BaseModel):
            found[id(obj)] = obj
            stack.extend(obj.__dict__.values())
            stack.extend((obj.__pydantic_extra__ or {}).values())
    return found


def _first_list_argument(messages: list[Any]) -> list[Any] | None:
    for message in messages:
        for call in getattr(message, "tool_calls", None) or []:
            for value in call.arguments.values():
                if isinstance(value, list) and value:
                    return value
    return None


def _task_with_list_argument(domain: str) -> Any:
    for task in get_domain(domain).tasks("test"):
        for action in task.evaluation_criteria.actions or []:
            if action.requestor == "assistant" and any(
                isinstance(v, list) and v for v in action.arguments.values()
            ):
                return task
    raise AssertionError(f"no {domain} task with a list argument")


@pytest.mark.parametrize("domain", ["airline", "retail"])
def test_a_returned_trajectory_shares_nothing_with_the_task(domain) -> None:
    backend = get_domain(domain)
    task = _task_with_list_argument(domain).model_copy(deep=True)  # ours to spoil, if it fails
    gold = copy.deepcopy(task.evaluation_criteria)
    config = EpisodeConfig.build(domain=domain, split="test")
    trajectory = asyncio.run(rollout(task, config))
    assert trajectory.reward == 1.0, trajectory.reward_info
    saved = copy.deepcopy(trajectory.messages)

    returned = mutable_ids(trajectory.messages, trajectory.reward_info)
    shared = returned.keys() & mutable_ids(task).keys()
    assert not shared, [type(returned[i]).__name__ for i in shared]

    # What a host might do to a logged sample: edit it in place.
    _first_list_argument(trajectory.messages).pop()
    for check in trajectory.reward_info.action_checks or []:
        for value in check.action.arguments.values():
            if isinstance(value, list) and value:
                value.pop()
    assert task.evaluation_criteria == gold
    rescored = backend.score(task, saved, "user_stop")
    assert rescored.reward == 1.0


def test_a_returned_trajectory_shares_nothing_with_the_base_database() -> None:
    backend = get_domain("airline")
    task = _task_with_list_argument("airline")
    trajectory = asyncio.run(rollout(task, EpisodeConfig.build(domain="airline", split="test")))
    returned = mutable_ids(trajectory.messages, trajectory.reward_info)
    assert not returned.keys() & mutable_ids(backend._base.db).keys()


# -- point 7: tau2's class-level telecom state stays per episode --------------------------------
def _tau2_default_vpn() -> dict[str, Any]:
    """`TelecomUserTools.default_vpn_details` in a fresh process: tau2's own pristine value."""
    code = (
        "import json\n"
        "from tau2.domains.telecom.user_tools import TelecomUserTools as T\n"
        "print(json.dumps(T.default_vpn_details.model_dump(mode='json')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class VpnUser:
    """Connects the phone's VPN, then ends the conversation."""

    def __init__(self) -> None:
        self.turn = 0

    async def start(self, context, history) -> None:
        return None

    async def respond(self, message):
        from tau_adapters.domains.tau2.api import api

        t = api()
        self.turn += 1
        if self.turn == 1:
            call = t.ToolCall(id="vpn", name="connect_vpn", arguments={}, requestor="user")
            return t.UserMessage(role="user", tool_calls=[call])
        return t.UserMessage(role="user", content=t.STOP)

    async def close(self) -> None:
        return None


def test_break_vpn_in_one_episode_does_not_reach_the_next() -> None:
    reference = _tau2_default_vpn()
    backend = get_domain("telecom")
    tasks = backend.tasks("full")
    broken = next(
        task
        for task in tasks
        if "break_vpn" in [a.func_name for a in (task.initial_state.initialization_actions or [])]
    )
    plain = next(
        task
        for task in tasks
        if not any("vpn" in a.func_name for a in (task.initial_state.initialization_actions or []))
    )
    config = EpisodeConfig.build(domain="telecom", split="full")
    first = asyncio.run(rollout(broken, config))
    assert first.reward == 1.0, first.reward_info  # the set-up ran (and was scored) here

    async def connect() -> Any:
        session = Session(plain, config, VpnUser(), domain=backend)
        await session.start()
        return session

    session = asyncio.run(connect())
    device = session.environment.user_tools.db.device
    assert device.vpn_connected
    assert device.vpn_details.model_dump(mode="json") == reference
    assert session.messages[-2].role == "tool" and not session.messages[-2].error


# -- point 8: READ tools, run uncopied on the base database, leave it unchanged -----------------
def _arguments(domain: str, db: Any) -> dict[str, list[dict[str, Any]]]:
    """Valid argument sets per parameter group, drawn from the database (several entries each)."""
    if domain == "airline":
        flights = list(db.flights.values())[:3]
        legs = [
            {"origin": f.origin, "destination": f.destination, "date": next(iter(f.dates))}
            for f in flights
        ]
        return {
            "reservation_id": [{"reservation_id": k} for k in list(db.reservations)[:3]],
            "user_id": [{"user_id": k} for k in list(db.users)[:3]],
            "date,destination,origin": legs,
            "date,flight_number": [
                {"flight_number": f.flight_number, "date": leg["date"]}
                for f, leg in zip(flights, legs, strict=True)
            ],
        }
    if domain == "retail":
        users = list(db.users.values())[:3]
        return {
            "first_name,last_name,zip": [
                {
                    "first_name": u.name.first_name,
                    "last_name": u.name.last_name,
                    "zip": u.address.zip,
                }
                for u in users
            ],
            "email": [{"email": u.email} for u in users],
            "order_id": [{"order_id": k} for k in list(db.orders)[:3]],
            "product_id": [{"product_id": k} for k in list(db.products)[:3]],
            "user_id": [{"user_id": k} for k in list(db.users)[:3]],
        }
    return {}


@pytest.mark.parametrize("domain", ["airline", "retail", "mock"])
def test_every_read_tool_leaves_the_base_database_unchanged(domain) -> None:
    import inspect

    backend = get_domain(domain)
    t = backend.tau2
    base = backend._base.db
    provided = _arguments(domain, base)
    env = backend.environment()
    before = base.get_hash()  # tau2's own hash of the whole database
    called = set()
    for name in sorted(backend.shared_read_tools):
        params = sorted(inspect.signature(getattr(env.tools, name)).parameters)
        if name == "calculate":  # takes no database value
            sets = [{"expression": "2 + 3 * 4"}]
        elif not params:
            sets = [{}]
        else:
            sets = provided.get(",".join(params))
            assert sets, f"{domain}.{name}{tuple(params)}: no valid arguments known to this test"
        for arguments in sets:
            call = t.ToolCall(id=f"{name}_call", name=name, arguments=arguments)
            result = env.get_response(call)
            assert not result.error, (name, arguments, result.content)
        env.sync_tools()
        assert base.get_hash() == before, f"{domain}.{name} changed the shared base database"
        called.add(name)
    labelled = {n for n in env.tools.tools if env.tools.tool_type(n) == t.ToolType.READ}
    assert called == labelled  # every tool tau2 labels READ was exercised
