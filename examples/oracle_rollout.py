"""One episode by hand: the message-level session that every host adapter drives.

usage: python examples/oracle_rollout.py DOMAIN TASK_ID     (e.g. airline 0)
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


USAGE = "usage: python examples/oracle_rollout.py DOMAIN TASK_ID   (e.g. airline 0)"

if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    from tau_adapters.errors import ConfigError

    try:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
    except ConfigError as exc:
        print(f"{exc}\n{USAGE}", file=sys.stderr)
        sys.exit(2)
