"""The package's imports run only downward between layers, and no modules import each other in a
circle: walked from the source (AST), so a new upward import fails here naming the edge.

Imports under ``if TYPE_CHECKING:`` do not run and are not counted. Function-local imports are
counted like any other: they are for optional heavy dependencies, never to dodge a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "tau_adapters"
ADAPTERS = ROOT / "adapters"

#: Bottom to top. A module may import its own layer (without a circle) and the layers below.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("core",),
    ("runtime",),
    ("domains",),
    ("plugins",),
    ("config",),
    ("tokens",),
    ("parsers",),
    ("rewards",),
    ("users",),
    ("agents",),
    ("episode",),
    ("evaluation",),
    ("hosts",),
    ("cli", "__main__"),
    ("slime", "areal", "skyrl"),
]
#: Imported by tests and benchmarks only: production code never imports it.
TESTING = "testing"


def layer_of(module: str) -> int | None:
    """Layer index of ``tau_adapters.<first>...``; the package root itself is None."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    return None


def module_name(path: Path) -> str:
    if path.is_relative_to(ADAPTERS):
        rel = path.relative_to(ADAPTERS).with_suffix("")
    else:
        rel = path.relative_to(SRC).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["tau_adapters", *parts])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """(imported tau_adapters module, line) for every import that runs in `path` (or in `source`
    read as if it were that file)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*up, base] if base else up)
                for alias in child.names:
                    # ``from pkg import sub`` names a module when pkg/sub exists.
                    candidate = f"{base}.{alias.name}"
                    found.append((candidate if _exists(candidate) else base, child.lineno))
            visit(child)

    visit(ast.parse(path.read_text() if source is None else source, filename=str(path)))
    return [(m, line) for m, line in found if m == "tau_adapters" or m.startswith("tau_adapters.")]


def _exists(module: str) -> bool:
    parts = module.split(".")[1:]
    for base in (SRC, ADAPTERS):
        target = base.joinpath(*parts) if parts else base
        if target.with_suffix(".py").is_file() or (target / "__init__.py").is_file():
            return True
    return False


def package_files() -> list[Path]:
    files = [p for p in SRC.rglob("*.py") if TESTING not in p.relative_to(SRC).parts[:1]]
    return sorted(files + list(ADAPTERS.rglob("*.py")))


def edges() -> list[tuple[str, str, str]]:
    """(importer, imported, "file:line") for every intra-package import of production code."""
    out = []
    for path in package_files():
        importer = module_name(path)
        for imported, line in imports_of(path):
            out.append((importer, imported, f"{path.relative_to(ROOT)}:{line}"))
    return out


def upward_imports(all_edges: list[tuple[str, str, str]]) -> list[str]:
    bad = []
    for importer, imported, where in all_edges:
        if imported.split(".")[1:2] == [TESTING]:
            bad.append(f"{where}: {importer} imports {imported} (production never imports testing)")
            continue
        low, high = layer_of(importer), layer_of(imported)
        if low is None or high is None:
            continue  # the package root re-exports lazily; it is not a layer
        if high > low:
            bad.append(f"{where}: {importer} (layer {LAYERS[low][0]}) imports {imported} "
                       f"(layer {LAYERS[high][0]}, above it)")  # fmt: skip
    return bad


def circles(all_edges: list[tuple[str, str, str]]) -> list[str]:
    """Strongly connected groups of more than one module (Tarjan), each with its edges."""
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for importer, imported, at in all_edges:
        if importer != imported and layer_of(imported) is not None:
            graph.setdefault(importer, set()).add(imported)
            where.setdefault((importer, imported), at)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    out = []
    for group in groups:
        inside = [
            f"{a} -> {b} ({where[a, b]})" for a in group for b in sorted(graph[a]) if b in group
        ]
        out.append("circle: " + "; ".join(inside))
    return out


def test_imports_only_run_downward() -> None:
    bad = upward_imports(edges())
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_circles() -> None:
    bad = circles(edges())
    assert not bad, "\n".join(bad)


def test_every_module_has_a_layer() -> None:
    missing = sorted(
        {importer for importer, _, _ in edges() if importer != "tau_adapters"}
        - {m for m, *_ in edges() if layer_of(m) is not None}
    )
    assert not missing, f"modules outside every layer (add them to LAYERS): {missing}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tau_adapters.cli.main import main\n", "layer cli, above it"),
        ("from tau_adapters.testing import LoopbackEngine\n", "production never imports testing"),
    ],
)
def test_the_check_names_an_upward_edge(source: str, expected: str) -> None:
    """The checker itself bites: an upward import planted in the config module's source."""
    config = SRC / "config.py"
    planted = config.read_text() + "\n\ndef _planted() -> None:\n    " + source.strip() + "\n"
    found = [
        (module_name(config), imported, f"config.py:{line}")
        for imported, line in imports_of(config, planted)
    ]
    bad = upward_imports(found)
    assert any(expected in line for line in bad), bad
