"""tau2's solo protocol, read from the installed tau2: the prompt, the ``done`` tool, which tasks
qualify, and the ``think`` tool of AReaL's tau2 example.

In solo mode (tau2's ``llm_agent_solo`` with its ``dummy_user``) nobody plays the customer: the
agent gets the ticket in its system prompt, holds the agent's tools, the user's tools and ``done``,
and must answer with tool calls. Everything here comes from tau2's own objects (`LLMSoloAgent`'s
constants, its schema of ``done``, its task check), so a policy trained here sees what tau2's solo
agent sees, on whichever tau2 release is installed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from tau_adapters.domains.tau2.api import api

#: AReaL's think tool (examples/tau2/agent.py): its name, the answer every call gets, and its
#: OpenAI schema (what tau2's `as_tool` makes of AReaL's `think(thoughts: str)`; a test builds it
#: with tau2 and compares).
THINK_TOOL_NAME = "think"
THINK_ANSWER = "Your thoughts are recorded. Please continue your work."
THINK_TOOL_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": THINK_TOOL_NAME,
        "description": "Use this tool to think. The thoughts will be visible in the history.\n\n"
        "Only use this tool to think when necessary.",
        "parameters": {
            "properties": {"thoughts": {"title": "Thoughts", "type": "string"}},
            "required": ["thoughts"],
            "title": "parameters",
            "type": "object",
        },
    },
}


@dataclass(frozen=True)
class Solo:
    """tau2's solo-agent constants and checks (`LLMSoloAgent`)."""

    system_prompt_template: str
    instruction_template: str
    stop_function: str
    stop_token: str
    done_schema: dict[str, Any]
    agent_class: Any

    def system_prompt(self, policy: str, ticket: str) -> str:
        """`LLMSoloAgent.system_prompt` for a domain's solo policy and a task's ticket."""
        instruction = self.instruction_template.format(
            stop_function_name=self.stop_function, stop_token=self.stop_token
        )
        return self.system_prompt_template.format(
            agent_instruction=instruction, domain_policy=policy, ticket=ticket
        )

    def task_problem(self, task: Any) -> str | None:
        """Why tau2's solo agent would not run `task` (None: it would).

        tau2's `LLMSoloAgent.check_valid_task`, plus its second half for tasks that have an
        initial state: tau2 skips the ticket and gold-action checks there, but a solo episode
        without a ticket has no task to read and one without gold actions cannot be checked.
        """
        criteria = task.evaluation_criteria
        if not self.agent_class.check_valid_task(task):
            if task.initial_state is not None:
                return "its message history holds a user message or an agent text message"
            if not getattr(task, "ticket", None):
                return "it has no ticket (the solo agent's only description of the task)"
            return "it has no gold actions"
        if not getattr(task, "ticket", None):
            return "it has no ticket (the solo agent's only description of the task)"
        if criteria is None or not (criteria.actions or []):
            return "it has no gold actions"
        return None


@functools.cache
def solo() -> Solo:
    """tau2's solo constants, read once from the installed tau2."""
    api()  # the install hint when tau2 is missing; quiet logging
    from tau2.agent import llm_agent

    agent_class = llm_agent.LLMSoloAgent
    stop_function = agent_class.STOP_FUNCTION_NAME
    # tau2 appends `done` in the agent's constructor; build a throw-away agent to read the exact
    # schema tau2 gives the model (no task is needed for that).
    probe = agent_class.__new__(agent_class)
    probe.tools = []
    agent_class.add_stop_tool(probe)
    done = next(tool for tool in probe.tools if tool.name == stop_function)
    return Solo(
        system_prompt_template=llm_agent.SYSTEM_PROMPT_SOLO,
        instruction_template=llm_agent.AGENT_SOLO_INSTRUCTION,
        stop_function=stop_function,
        stop_token=agent_class.STOP_TOKEN,
        done_schema=done.openai_schema,
        agent_class=agent_class,
    )


def strip_think(messages: list[Any]) -> list[Any]:
    """The trajectory without think calls and their answers: what tau2 scores.

    tau2 26.3 replays every tool call when it scores and raises on a tool it does not know;
    v1.0.x skips it. Leaving think out makes both score alike. An assistant message left with
    neither text nor calls is dropped; other messages are shared, not copied.
    """
    think_ids: set[str] = set()
    out: list[Any] = []
    for message in messages:
        calls = getattr(message, "tool_calls", None)
        role = getattr(message, "role", None)
        if role == "assistant" and calls:
            kept = [c for c in calls if c.name != THINK_TOOL_NAME]
            if len(kept) != len(calls):
                think_ids.update(c.id for c in calls if c.name == THINK_TOOL_NAME)
                if not kept and not message.has_text_content():
                    continue
                message = message.model_copy(update={"tool_calls": kept or None})
        elif role == "tool" and getattr(message, "id", None) in think_ids:
            continue
        out.append(message)
    return out
