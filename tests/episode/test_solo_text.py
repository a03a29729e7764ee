"""Solo mode text level (the `TextEpisode` SkyRL and AReaL's agent mode use): the host sees
tau2's solo prompt with the ticket and the `done` schema, no user turn, and the episode equals
the core rollout's."""

from __future__ import annotations

import asyncio

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.domains.tau2.solo import solo
from tau_adapters.episode.rollout import rollout
from tau_adapters.episode.tasks import TaskRef
from tau_adapters.episode.text_episode import TextEpisode, oracle_texts

from conftest import requires_tau2

pytestmark = requires_tau2


def test_text_episode_plays_tau2_solo_and_matches_the_core_rollout() -> None:
    backend = get_domain("telecom")
    task = backend.tasks("full")[2]
    config = EpisodeConfig.build(domain="telecom", split="full", solo_mode=True)
    episode = TextEpisode(TaskRef("telecom", "full", task.id), config)

    async def play():
        opening = await episode.start()
        turns = [opening]
        for text in oracle_texts(task, config.parser, solo=True):
            result = await episode.step(text)
            turns.append(result.observation)
            if result.done:
                return opening, result.trajectory
        raise AssertionError("the episode did not end")

    opening, trajectory = asyncio.run(play())
    # The opening is the system prompt alone: tau2's solo prompt (with the ticket) inside it.
    assert [m["role"] for m in opening] == ["system"]
    _, policy, _ = backend.solo_agent(task)
    assert solo().system_prompt(policy, task.ticket) in opening[0]["content"]
    assert '"name": "done"' in opening[0]["content"]
    assert trajectory.reward == 1.0 and trajectory.termination_reason == "agent_stop"
    core = asyncio.run(rollout(task, config))

    def dump(messages):  # call ids differ (model turns vs the oracle's own ids)
        out = []
        for m in messages:
            row = m.model_dump(mode="json", exclude={"timestamp", "raw_data", "id"})
            for call in row.get("tool_calls") or []:
                call.pop("id")
            out.append(row)
        return out

    assert dump(trajectory.messages) == dump(core.messages)
    assert trajectory.to_row()["solo_mode"] is True
