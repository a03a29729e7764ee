"""A real HTTP judge on loopback: OpenAI's ``/v1/chat/completions``, answering tau2's NL-assertion
prompt from the assertions it is sent.

tau2's judge prompt ends with ``expectedOutcomes:`` followed by the Python list of the task's
assertions; this server reads that list back and grades every assertion with a fixed verdict
(`verdict`: True, as an oracle deserves; False, to check that an unmet assertion gives 0), in the
JSON shape tau2 parses. `mode` ``down`` answers 503 to everything (a judge that cannot answer),
``fenced`` wraps the JSON in a Markdown code fence, ``prose`` answers text that is not JSON.
`errors` (HTTP statuses) are answered, in order, to the first requests before any verdict: a
judge that is briefly unavailable (503), or that rejects a request (400).
`answer_for(prompt)` is the same answer as a plain function, so a test can hand tau2's own
evaluator exactly what the server would have said.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from tau_adapters.testing.server import LoopbackServer

MARKER = "expectedOutcomes:"


def assertions_in(prompt: str) -> list[str]:
    """The assertions listed in tau2's judge prompt (the list after ``expectedOutcomes:``)."""
    _, found, tail = prompt.rpartition(MARKER)
    if not found:
        raise ValueError("not a tau2 NL-assertion prompt (no expectedOutcomes)")
    return list(ast.literal_eval(tail.strip()))


def answer_for(prompt: str, verdict: bool = True) -> str:
    """The judge's JSON answer for a prompt: every listed assertion graded `verdict`."""
    results = [
        {
            "expectedOutcome": assertion,
            "reasoning": "loopback judge: fixed verdict",
            "metExpectation": verdict,
        }
        for assertion in assertions_in(prompt)
    ]
    return json.dumps({"results": results})


class LoopbackJudge(LoopbackServer):
    """``POST /v1/chat/completions`` answering tau2's judge prompt; counts the requests."""

    def __init__(
        self, verdict: bool = True, mode: str = "ok", errors: list[int] | None = None
    ) -> None:
        self.verdict = verdict
        self.mode = mode
        self.errors = list(errors or [])
        self.requests: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def chat(request: Request) -> Any:
            body = await request.json()
            self.requests.append(body)
            if len(self.requests) <= len(self.errors):
                status = self.errors[len(self.requests) - 1]
                return JSONResponse({"error": f"loopback judge: HTTP {status}"}, status_code=status)
            if self.mode == "down":
                return JSONResponse({"error": "judge unavailable"}, status_code=503)
            prompt = body["messages"][-1]["content"]
            content = answer_for(prompt, self.verdict)
            if self.mode == "fenced":
                content = f"```json\n{content}\n```"
            elif self.mode == "prose":
                content = "Every expectation looks met to me."
            return JSONResponse(
                {
                    "id": f"judge-{len(self.requests)}",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 20},
                }
            )

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


__all__ = ["LoopbackJudge", "answer_for", "assertions_in"]
