"""Domain and task-set names, known without importing tau2."""

from __future__ import annotations

from tau_adapters.errors import ConfigError, UnknownNameError

DOMAINS: tuple[str, ...] = ("airline", "retail", "telecom", "mock")
#: tau2 task sets that are a split of a domain.
DOMAIN_ALIASES: dict[str, tuple[str, str]] = {
    "telecom_small": ("telecom", "small"),
    "telecom_full": ("telecom", "full"),
}


def resolve_domain_name(name: str) -> str:
    """Validate a domain or task-set name and return it unchanged."""
    if name not in DOMAINS and name not in DOMAIN_ALIASES:
        raise UnknownNameError("domain", name, [*DOMAINS, *DOMAIN_ALIASES])
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
