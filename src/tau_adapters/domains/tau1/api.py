"""Everything tau-adapters touches in tau-bench v1 (module `tau_bench`), in one place.

tau-bench v1 is not on a package index; it installs from its repository at a pinned commit (see
`TAU1_INSTALL_HINT`). Nothing here is imported by ``import tau_adapters``: call `api1()` when
tau_bench is needed.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from typing import Any

from tau_adapters.errors import ConfigError

TAU1_COMMIT = "59a200c6d575d595120f1cb70fea53cef0632f6b"
#: Our domain names -> v1's: the names are ours (v1 and tau2 share ``airline``/``retail``).
TAU1_DOMAINS: dict[str, str] = {"tau1-airline": "airline", "tau1-retail": "retail"}


def tau1_version_label() -> str:
    """e.g. ``tau-bench 0.1.0 (59a200c6d575)``: what rows and summaries record."""
    return f"tau-bench {api1().version} ({TAU1_COMMIT[:12]})"


TAU1_INSTALL_HINT = (
    "tau-bench v1 (module `tau_bench`) is not installed. It is not on any package index: install "
    f'it from its repository, `pip install "tau_bench @ git+https://github.com/sierra-research/'
    f'tau-bench@{TAU1_COMMIT}"` (its environments need litellm; never litellm 1.82.7 or 1.82.8).'
)

#: Split names of each v1 domain and the module attribute holding its task list.
TAU1_SPLITS: dict[str, dict[str, tuple[str, str]]] = {
    "airline": {"test": ("tau_bench.envs.airline.tasks_test", "TASKS")},
    "retail": {
        "train": ("tau_bench.envs.retail.tasks_train", "TASKS_TRAIN"),
        "dev": ("tau_bench.envs.retail.tasks_dev", "TASKS_DEV"),
        "test": ("tau_bench.envs.retail.tasks_test", "TASKS_TEST"),
    },
}
TAU1_ENV_CLASSES: dict[str, tuple[str, str]] = {
    "airline": ("tau_bench.envs.airline.env", "MockAirlineDomainEnv"),
    "retail": ("tau_bench.envs.retail.env", "MockRetailDomainEnv"),
}


@dataclass(frozen=True)
class Tau1:
    """Handles on the tau_bench objects the library uses."""

    Env: Any
    Action: Any
    RewardResult: Any
    RESPOND_ACTION_NAME: str
    to_hashable: Any
    consistent_hash: Any
    user_module: Any
    version: str

    def env_class(self, domain: str) -> Any:
        module, name = TAU1_ENV_CLASSES[domain]
        return getattr(importlib.import_module(module), name)

    def tasks(self, domain: str, split: str) -> list[Any]:
        module, name = TAU1_SPLITS[domain][split]
        return list(getattr(importlib.import_module(module), name))


@functools.cache
def api1() -> Tau1:
    """Import tau_bench once, without litellm fetching its price map over the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from tau_bench.envs import base
        from tau_bench.envs import user as user_module
        from tau_bench.types import RESPOND_ACTION_NAME, Action, RewardResult
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "tau_bench":
            raise ConfigError(TAU1_INSTALL_HINT) from exc
        raise
    try:
        from importlib.metadata import version

        ver = version("tau_bench")
    except Exception:
        ver = "unknown"
    return Tau1(
        Env=base.Env,
        Action=Action,
        RewardResult=RewardResult,
        RESPOND_ACTION_NAME=RESPOND_ACTION_NAME,
        to_hashable=base.to_hashable,
        consistent_hash=base.consistent_hash,
        user_module=user_module,
        version=ver,
    )
