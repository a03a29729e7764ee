"""Benchmarks and their domain names: the one registry every layer asks.

A benchmark is a ``domains/<name>/`` folder with a `Benchmark` object in its ``benchmark`` module,
plus one line in `BENCHMARKS`. Nothing else dispatches on domain names: code asks
`benchmark_for(domain)` for the benchmark's name, version, user simulator, SkyRL env class and
backend. Looking a name up imports no benchmark package unless the name is not one the benchmark
knows statically (then tau2's own registry is consulted).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Protocol, runtime_checkable

from tau_adapters.errors import ConfigError, UnknownNameError

#: benchmark name -> "module:attr" of its `Benchmark`. Asked in this order (cheap checks first).
BENCHMARKS: dict[str, str] = {
    "tau1": "tau_adapters.domains.tau1.benchmark:BENCHMARK",
    "tau2": "tau_adapters.domains.tau2.benchmark:BENCHMARK",
}


@runtime_checkable
class Benchmark(Protocol):
    """What the rest of the package needs to know about a benchmark, without importing it."""

    #: ``tau2``, ``tau1``: written into every trajectory row.
    name: str
    #: SkyRL env id (`tau_adapters.skyrl.register`) of this benchmark's episodes.
    skyrl_env_class: str
    #: "module:attr" of the LLM user simulator class for this benchmark, or None for ours
    #: (`users.llm.LLMUser`); called as ``cls(transport, config)``.
    user_factory: str | None

    def owns(self, name: str) -> bool: ...

    def domain_names(self) -> list[str]: ...

    def resolve(self, name: str, split: str | None) -> tuple[str, str | None]: ...

    def get_domain(self, name: str, **options: Any) -> Any: ...

    def version(self) -> str: ...


@functools.cache
def _load(benchmark: str) -> Benchmark:
    module, _, attr = BENCHMARKS[benchmark].partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def benchmarks() -> list[Benchmark]:
    return [_load(name) for name in BENCHMARKS]


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UnknownNameError("benchmark", name, list(BENCHMARKS))
    return _load(name)


def benchmark_for(name: str) -> Benchmark:
    """The benchmark a domain or task-set name belongs to."""
    for bench in benchmarks():
        if bench.owns(name):
            return bench
    known = [n for bench in benchmarks() for n in bench.domain_names()]
    raise UnknownNameError("domain", name, known)


def benchmark_of(name: str) -> str:
    """The name of the benchmark a domain belongs to (``tau2``, ``tau1``)."""
    return benchmark_for(name).name


def domain_names() -> list[str]:
    """Every domain and task-set name of every benchmark."""
    return [n for bench in benchmarks() for n in bench.domain_names()]


def resolve_domain_name(name: str) -> str:
    """Validate a domain or task-set name and return it unchanged."""
    benchmark_for(name)
    return name


def resolve_domain(name: str, split: str | None = None) -> tuple[str, str | None]:
    """Map a task-set name such as ``telecom_small`` to (domain, split)."""
    return benchmark_for(name).resolve(name, split)


def split_alias(
    aliases: dict[str, tuple[str, str]], name: str, split: str | None
) -> tuple[str, str | None]:
    """(domain, split) of a task-set alias; a conflicting explicit split is a configuration error."""
    if name in aliases:
        domain, alias_split = aliases[name]
        if split not in (None, alias_split):
            raise ConfigError(f"task set {name!r} fixes split {alias_split!r}; got split {split!r}")
        return domain, alias_split
    return name, split
