"""Episodes share one parsed database but can never see each other's writes."""

from __future__ import annotations

import asyncio

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout

from conftest import requires_tau2
from helpers import PerturbedOracle, is_write

pytestmark = requires_tau2


def _task_with_write(domain: str):
    backend = get_domain(domain)
    for task in backend.tasks("test"):
        actions = task.evaluation_criteria.actions or []
        if any(is_write(domain, a.name) for a in actions):
            return task
    raise AssertionError("no task with a write action")


def test_concurrent_episodes_of_one_task_get_their_own_reward(official_score) -> None:
    domain = "airline"
    backend = get_domain(domain)
    task = _task_with_write(domain)
    base_hash_before = backend._base.db.get_hash()
    config = EpisodeConfig.build(domain=domain, split="test")

    async def many():
        runs = []
        for i in range(40):
            policy = None if i % 2 == 0 else PerturbedOracle("change_arg", domain)
            runs.append(rollout(task, config, policy=policy, trial=i))
        return await asyncio.gather(*runs)

    trajectories = asyncio.run(many())
    for i, trajectory in enumerate(trajectories):
        expected = 1.0 if i % 2 == 0 else 0.0
        assert trajectory.reward == expected, (i, trajectory.reward_info)
    # Spot-check against tau2's own scoring (fresh database per call).
    for trajectory in trajectories[:4]:
        reference = official_score(domain, task, trajectory.messages, "user_stop")
        assert reference.reward == trajectory.reward
    # The shared, parsed database is untouched.
    assert backend._base.db.get_hash() == base_hash_before


def test_write_in_one_environment_is_invisible_to_another() -> None:
    backend = get_domain("airline")
    t = backend.tau2
    first, second = backend.environment(), backend.environment()
    reservation_id = next(iter(backend._base.db.reservations))
    before = second.get_response(
        t.ToolCall(
            id="a", name="get_reservation_details", arguments={"reservation_id": reservation_id}
        )
    )
    cancelled = first.get_response(
        t.ToolCall(id="b", name="cancel_reservation", arguments={"reservation_id": reservation_id})
    )
    after = second.get_response(
        t.ToolCall(
            id="c", name="get_reservation_details", arguments={"reservation_id": reservation_id}
        )
    )
    assert not cancelled.error
    assert '"cancelled"' in cancelled.content
    assert after.content == before.content
    assert first.get_db_hash() != second.get_db_hash()
    assert second.get_db_hash() == backend.environment().get_db_hash()


def test_digest_agrees_with_tau2_full_hash_equality() -> None:
    """Two views compare equal by digest exactly when tau2's full database hashes are equal."""
    backend = get_domain("retail")
    t = backend.tau2
    a, b, c = backend.environment(), backend.environment(), backend.environment()
    user_id = next(iter(backend._base.db.users))
    address = {
        "address1": "1 Main St",
        "address2": "",
        "city": "Austin",
        "country": "USA",
        "state": "TX",
        "zip": "78701",
    }
    call = t.ToolCall(id="x", name="modify_user_address", arguments={"user_id": user_id, **address})
    assert not a.get_response(call).error
    assert not b.get_response(call).error
    # A write that leaves the entry as it was: touched, but equal to the base.
    c.get_response(t.ToolCall(id="y", name="get_user_details", arguments={"user_id": user_id}))
    full = [env.tools.db.get_hash() for env in (a, b, c)]
    digests = [env.get_db_hash() for env in (a, b, c)]
    assert (full[0] == full[1]) and (digests[0] == digests[1])
    assert (full[0] != full[2]) and (digests[0] != digests[2])
    assert full[2] == backend._base.db.get_hash()
