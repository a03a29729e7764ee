"""Garbage-collector hygiene for processes that run hundreds of episodes on one event loop.

A full (generation 2) collection walks every tracked object. After tau2's databases, the task
lists, transformers and a tokenizer are loaded, that is millions of objects that never change, and
each full pass stalls the event loop for tens of milliseconds. `freeze_long_lived` moves everything
alive at that moment into the permanent generation (``gc.freeze``). It is called when such
long-lived state has just been built (before any episode of the process runs), so what it freezes
is meant to live as long as the process.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    gc.collect()
    gc.freeze()
