"""slime's `RolloutDataSourceWithBuffer` as the partial-rollout contract uses it.

Written from the behaviour of slime/rollout/data_source.py at THUDM/slime 624b824a: samples come
from the buffer first (``pop_first``: oldest groups first), then from the dataset; a group put
back must hold ``n_samples_per_prompt`` samples; the buffer lives in memory only (slime's
``save()`` does not persist it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any


def pop_first(args: Any, rollout_id: Any, buffer: list[list[Any]], n: int) -> list[list[Any]]:
    taken = buffer[:n]
    del buffer[:n]
    return taken


class RolloutDataSourceWithBuffer:
    """``prompts``: a function giving the i-th prompt group (fresh Samples)."""

    def __init__(self, args: Any, prompts: Callable[[int], list[Any]]) -> None:
        self.args = args
        self.prompts = prompts
        self.buffer: list[list[Any]] = []
        self.offset = 0
        self.buffer_filter = pop_first

    def get_samples(self, n: int) -> list[list[Any]]:
        groups = self.buffer_filter(self.args, None, self.buffer, n)
        while len(groups) < n:
            groups.append([copy.deepcopy(s) for s in self.prompts(self.offset)])
            self.offset += 1
        return groups

    def __call__(self, n: int) -> list[list[Any]]:
        return self.get_samples(n)

    def add_samples(self, groups: list[list[Any]]) -> None:
        for group in groups:
            if len(group) != self.args.n_samples_per_prompt:
                raise ValueError(
                    f"a group put back holds {len(group)} samples, not "
                    f"n_samples_per_prompt={self.args.n_samples_per_prompt}"
                )
            self.buffer.append(group)
