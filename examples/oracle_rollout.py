"""One episode by hand: the message-level session that every host adapter drives.

python examples/oracle_rollout.py airline 0
"""

from __future__ import annotations

import asyncio
import sys

from tau_adapters import EpisodeConfig, OraclePolicy, ScriptedUser, Session, get_domain


async def main(domain: str, task_id: str) -> None:
    config = EpisodeConfig.build(domain=domain)
    task = get_domain(domain).task(task_id)
    session = Session(task, config, ScriptedUser())
    policy = OraclePolicy()
    observation = await session.start()
    await policy.start(session.context)
    while not session.done:
        message = await policy.act(observation)
        result = await session.step(message)
        observation = result.observation
    for message in session.messages:
        text = message.content or ", ".join(c.name for c in message.tool_calls or [])
        print(f"{message.role:>9}: {text[:100]}")
    info = session.score()
    print(f"termination={session.termination_reason} reward={info.reward}")


if __name__ == "__main__":
    asyncio.run(main(*(sys.argv[1:3] or ["airline", "0"])))
