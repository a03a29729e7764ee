"""Domain and task-set names, known without importing tau2."""

from __future__ import annotations

from tau_adapters.errors import ConfigError, UnknownNameError

DOMAINS: tuple[str, ...] = ("airline", "retail", "telecom", "mock")
#: tau2 task sets that are a split of a domain.
DOMAIN_ALIASES: dict[str, tuple[str, str]] = {
    "telecom_small": ("telecom", "small"),
    "telecom_full": ("telecom", "full"),
}
#: tau-bench v1 (module `tau_bench`) domains: the ``tau1-`` prefix names the benchmark.
TAU1_DOMAINS: dict[str, str] = {"tau1-airline": "airline", "tau1-retail": "retail"}


def benchmark_of(name: str) -> str:
    """``tau1`` for a tau-bench v1 domain name, ``tau2`` otherwise."""
    return "tau1" if name in TAU1_DOMAINS else "tau2"


def resolve_domain_name(name: str) -> str:
    """Validate a domain or task-set name and return it unchanged."""
    if name not in DOMAINS and name not in DOMAIN_ALIASES and name not in TAU1_DOMAINS:
        raise UnknownNameError("domain", name, [*DOMAINS, *DOMAIN_ALIASES, *TAU1_DOMAINS])
    return name


def resolve_domain(name: str, split: str | None = None) -> tuple[str, str | None]:
    """Map a task-set name such as ``telecom_small`` to (domain, split)."""
    resolve_domain_name(name)
    if name in DOMAIN_ALIASES:
        domain, alias_split = DOMAIN_ALIASES[name]
        if split not in (None, alias_split):
            raise ConfigError(f"task set {name!r} fixes split {alias_split!r}; got split {split!r}")
        return domain, alias_split
    return name, split
