"""System prompts for the agent.

The default is tau2's own agent prompt (its instruction and its framing of the domain policy), read
from the installed tau2 at run time so that a policy trained here sees what tau2's agent sees.
Tool schemas travel separately (as ``tools``).
"""

from __future__ import annotations


def system_prompt(domain_policy: str, instruction: str | None = None) -> str:
    """The agent's system prompt for a domain; `instruction` replaces tau2's agent instruction."""
    from tau_adapters.domains.tau2.api import api

    t = api()
    return t.SYSTEM_PROMPT.format(
        agent_instruction=instruction if instruction is not None else t.AGENT_INSTRUCTION,
        domain_policy=domain_policy,
    )
