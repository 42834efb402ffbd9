"""The layout's rules (DESIGN.md §2), read from the source with `ast`: a failure names the import.

Every `import` counts, at module level or inside a function (a lazy import hides a cycle, it does
not remove it), `TYPE_CHECKING` blocks included. Edges are drawn between the project's modules
(`pipeline`, `flows`, `models`, `storage`); a `from package import name` that names a submodule
is an edge to that submodule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import STAGES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "flows", "models", "storage")
STAGE_MODULES = tuple(f"pipeline.{name}" for name in STAGES)
WIRING = ("pipeline.runner", "pipeline.study")  # the pipeline modules that wire stages
MAX_LINES = 400  # STYLE.md: files stay under ~400 lines


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a project module, or an outside top-level package)
    line: int

    def __str__(self) -> str:
        path = module_path(self.source).relative_to(ROOT)
        return f"{path}:{self.line} imports {self.target}"


def module_path(name: str) -> Path:
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


MODULES = project_modules()


def imports_of(name: str) -> Iterator[Import]:
    """Every import statement of module `name`, resolved to module names."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, _known(alias.name), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` folders up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if submodule in MODULES else _known(base)
                yield Import(name, target, node.lineno)


def _known(name: str) -> str:
    """The longest project module that `name` is or lies in, else its top-level package."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return parts[0]


ALL_IMPORTS = [edge for module in MODULES for edge in imports_of(module)]


def in_package(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def broken(rule) -> list[str]:
    return [str(edge) for edge in ALL_IMPORTS if rule(edge)]


def test_models_import_nothing_of_the_pipeline() -> None:
    assert not broken(
        lambda e: (
            in_package(e.source, "models") and in_package(e.target, "pipeline", "storage", "flows")
        )
    )


def test_storage_imports_neither_torch_nor_the_pipeline() -> None:
    heavy = ("torch", "safetensors", "transformers", "prefect")
    assert not broken(
        lambda e: (
            in_package(e.source, "storage")
            and in_package(e.target, "pipeline", "flows", "models", *heavy)
        )
    )


def test_pipeline_never_imports_prefect_or_flows() -> None:
    assert not broken(
        lambda e: in_package(e.source, "pipeline") and in_package(e.target, "prefect", "flows")
    )


def test_flows_hold_no_tensor_code() -> None:
    assert not broken(lambda e: in_package(e.source, "flows") and in_package(e.target, "torch"))


def test_subpackages_never_import_a_stage_module() -> None:
    """datasets/, video/, training/, ... serve the stages; only the runner wires stages."""

    def rule(e: Import) -> bool:
        subpackage = e.source.startswith("pipeline.") and (
            e.source.count(".") >= 2 or MODULES[e.source].name == "__init__.py"
        )
        return subpackage and e.target in (*STAGE_MODULES, *WIRING)

    assert not broken(rule)


def test_stages_talk_through_manifests_not_imports() -> None:
    """A stage module imports no other stage module (their contract is the manifest)."""
    assert not broken(
        lambda e: e.source in STAGE_MODULES and e.target in STAGE_MODULES and e.target != e.source
    )


def test_stages_and_runner_do_not_import_synthetic_data_or_benches() -> None:
    """What evaluate and report read of a synthetic set is a declared input file, named by a
    constant in pipeline.datasets; the pipeline works the same on real data. (The study writes
    its benchmark, so it may.)"""
    assert not broken(
        lambda e: (
            e.source in (*STAGE_MODULES, "pipeline.runner")
            and in_package(e.target, "pipeline.synth", "pipeline.bench")
        )
    )


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in ALL_IMPORTS:
        if edge.target in MODULES and edge.target != edge.source:
            graph[edge.source].add(edge.target)
    cycles = [sorted(component) for component in strongly_connected(graph) if len(component) > 1]
    found = {
        tuple(component): [
            str(e) for e in ALL_IMPORTS if e.source in component and e.target in component
        ]
        for component in cycles
    }
    assert not found


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative over a small graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


@pytest.mark.parametrize(
    "path",
    [*MODULES.values(), *sorted((ROOT / "tests").glob("*.py"))],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_module_stays_under_the_size_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by concern"


def test_the_checker_sees_what_it_must() -> None:
    """The rules above pass on this tree; they must also catch the faults they name."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]
    assert set(STAGE_MODULES) <= {e.target for e in ALL_IMPORTS if e.source == "pipeline.runner"}
    assert "torch" in {e.target for e in ALL_IMPORTS if e.source == "models.s3dg"}
