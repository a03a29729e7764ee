"""Shared pieces for the slime adapter's tests and benchmark: the slime stand-in on sys.path, slime
arguments, and an engine that plays the oracle (instantly) for the episode it is asked about."""

from __future__ import annotations

import asyncio
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

STANDIN = Path(__file__).resolve().parent / "slime_standin"


def use_slime() -> str:
    """Import the real slime if it is installed, else the stand-in; returns which one."""
    try:
        import slime.utils.types

        return (
            "slime" if "slime_standin" not in (sys.modules["slime"].__file__ or "") else "standin"
        )
    except ImportError:
        sys.path.insert(0, str(STANDIN))
        import slime.utils.types  # noqa: F401

        return "standin"


def slime_args(engine: Any, **changes: Any) -> Namespace:
    values = {
        "sglang_router_ip": engine.host,
        "sglang_router_port": engine.port,
        "hf_checkpoint": "local:chatml",
        "rollout_max_response_len": 4096,
        "rollout_max_context_len": None,
        "n_samples_per_prompt": 4,
        "advantage_estimator": "grpo",
        "rewards_normalization": True,
        "grpo_std_normalization": True,
        "reward_key": None,
    }
    values.update(changes)
    return Namespace(**values)


def oracle_texts(task: Any, parser: Any, *, skip_first_write: bool = False) -> list[str]:
    """The oracle's turns for `task`, written in the parser's format."""
    from tau_adapters.agents.oracle import OraclePolicy

    class _Context:
        pass

    context = _Context()
    context.task = task
    policy = OraclePolicy()
    asyncio.run(policy.start(context))
    texts = []
    skipped = not skip_first_write
    for message in policy._plan:
        if (
            not skipped
            and message.tool_calls
            and message.tool_calls[0].name.startswith(
                ("book", "cancel", "update", "modify", "exchange", "return", "send")
            )
        ):
            skipped = True
            continue
        text = message.content or ""
        text += "".join(parser.render_call(c.name, c.arguments) for c in message.tool_calls or [])
        texts.append(text)
    texts.append("###STOP###")
    return texts


class OracleEngine:
    """`canned` for LoopbackEngine: plays the oracle of whichever task the prompt is about.
    Samples with an odd ``sampling_seed`` skip their first write (a wrong answer)."""

    def __init__(self, template: Any, tasks: list[Any]) -> None:
        from tau_adapters.parsers.base import HermesParser
        from tau_adapters.users.scripted import opening_message

        parser = HermesParser()
        self.template = template
        self.marker = "<|im_start|>assistant\n"
        self.tasks = [(opening_message(t), t) for t in tasks]
        self.plans = {
            (t.id, bad): [
                [*template.encode(text), template.eot_id]
                for text in oracle_texts(t, parser, skip_first_write=bad)
            ]
            for t in tasks
            for bad in (False, True)
        }

    def __call__(self, input_ids: list[int], body: dict[str, Any]) -> list[int]:
        text = self.template.decode(input_ids)
        task = next(t for opening, t in self.tasks if opening in text)
        after = text[text.index(self.tasks[[x[1] for x in self.tasks].index(task)][0]) :]
        turn = after.count(self.marker) - 1
        seed = int((body.get("sampling_params") or {}).get("sampling_seed") or 0)
        plan = self.plans[(task.id, seed % 2 == 1)]
        return plan[min(turn, len(plan) - 1)]


class TicketOracleEngine:
    """`canned` for LoopbackEngine in solo mode, where no user opens the episode: the task is the
    one whose ticket is in the prompt (tau2's solo system prompt carries it), and each call gets
    the next of that task's planned turns (model text, e.g. `oracle_texts(task, solo=True)`)."""

    def __init__(self, template: Any, plans: list[tuple[Any, list[str]]]) -> None:
        tickets = [task.ticket for task, _ in plans]
        for i, ticket in enumerate(tickets):  # one ticket must never contain another
            assert ticket and not any(ticket in other for other in tickets[:i] + tickets[i + 1 :])
        self.template = template
        self.marker = "<|im_start|>assistant\n"
        self.plans = [
            (task.ticket, [[*template.encode(text), template.eot_id] for text in texts])
            for task, texts in plans
        ]

    def __call__(self, input_ids: list[int], body: dict[str, Any]) -> list[int]:
        text = self.template.decode(input_ids)
        found = [plan for ticket, plan in self.plans if ticket in text]
        assert len(found) == 1, "the prompt names no planned ticket (or several)"
        turn = text.count(self.marker) - 1  # the generation prompt opens the turn asked for
        return found[0][min(turn, len(found[0]) - 1)]
