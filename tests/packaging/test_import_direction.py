"""Each distribution imports only the siblings it declares, and no module imports itself back.

The rules (ARCHITECTURE.md, "Components"): `aerogrid` (the runtime, what app containers
hold) imports none of ours; `aerogrid-cloud` imports `aerogrid`; `aerogrid-devkit` imports
`aerogrid`, and `aerogrid_cloud` only through its `cloud` extra. The source of truth is
each pyproject.toml: an import of a sibling counts as declared when the sibling is in
`dependencies`, or in an optional extra and the import is lazy (inside a function, or
under `if TYPE_CHECKING:`), so that the distribution still imports without the extra.

Every `.py` under `*/src` is parsed with `ast` (imports inside functions included), so a
reader sees what the check sees. import-linter does the same for layers, but it imports
nothing lazily-imported into its graph and knows nothing of extras; this is 150 lines.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.paths import REPO

FOLDERS = ("runtime", "devkit", "cloud")

#: Module-level import cycles that exist today and are someone's open work. The test fails
#: on any other cycle, and on an entry here that is gone: this list only shrinks.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Distribution:
    name: str
    package: str
    src: Path
    requires: frozenset[str]
    #: Distributions that only an optional extra brings.
    extras: frozenset[str]


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    module: str
    #: Inside a function or under `if TYPE_CHECKING:`: not run when the module loads.
    lazy: bool


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def distributions() -> dict[str, Distribution]:
    found = {}
    for folder in FOLDERS:
        data = tomllib.loads((REPO / folder / "pyproject.toml").read_text())
        project = data["project"]
        (package_path,) = data["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        extras = project.get("optional-dependencies", {}).values()
        found[project["name"]] = Distribution(
            name=project["name"],
            package=Path(package_path).name,
            src=REPO / folder / package_path,
            requires=frozenset(map(_requirement_name, project.get("dependencies", []))),
            extras=frozenset(_requirement_name(r) for group in extras for r in group),
        )
    return found


def module_name(dist: Distribution, file: Path) -> str:
    parts = file.relative_to(dist.src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(file: Path, module: str) -> Iterator[Import]:
    """Every import in `file` (absolute names), marked lazy when loading does not run it."""
    is_package = file.name == "__init__.py"

    def absolute(node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        base = module.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def walk(node: ast.AST, lazy: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(file, child.lineno, alias.name, lazy)
            elif isinstance(child, ast.ImportFrom):
                source = absolute(child)
                for alias in child.names:
                    # `from pkg import mod` imports pkg.mod when it is a module; the graph
                    # below keeps whichever of the two names a module of ours.
                    yield Import(file, child.lineno, f"{source}.{alias.name}", lazy)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, True)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), True)
                for statement in child.orelse:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), lazy)
            else:
                yield from walk(child, lazy)

    yield from walk(ast.parse(file.read_text(), str(file)), False)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def sources(dist: Distribution) -> Iterator[tuple[Path, str]]:
    for file in sorted(dist.src.rglob("*.py")):
        yield file, module_name(dist, file)


def forbidden_imports(dists: dict[str, Distribution]) -> list[str]:
    by_package = {d.package: d for d in dists.values()}
    problems = []
    for dist in dists.values():
        for file, module in sources(dist):
            for found in imports(file, module):
                other = by_package.get(found.module.split(".")[0])
                if other is None or other is dist:
                    continue
                if other.name in dist.requires or (found.lazy and other.name in dist.extras):
                    continue
                how = "at module level " if other.name in dist.extras else ""
                problems.append(
                    f"{_shown(found.file)}:{found.line} imports {other.package} "
                    f"{how}but {dist.name} does not declare {other.name}"
                    + (" (only its extra, for lazy imports)" if how else "")
                )
    return problems


def _shown(file: Path) -> Path:
    return file.relative_to(REPO) if file.is_relative_to(REPO) else file


def module_graph(dist: Distribution) -> dict[str, set[str]]:
    """Module → the modules of the same distribution it imports when it loads."""
    modules = dict(sources(dist))
    known = set(modules.values())
    graph: dict[str, set[str]] = {name: set() for name in known}
    for file, module in modules.items():
        for found in imports(file, module):
            if found.lazy:
                continue
            target = found.module
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_declared_dependencies_point_one_way() -> None:
    dists = distributions()
    ours = set(dists)
    assert dists["aerogrid"].requires & ours == set() and not dists["aerogrid"].extras & ours
    assert dists["aerogrid-cloud"].requires & ours == {"aerogrid"}
    assert dists["aerogrid-devkit"].requires & ours == {"aerogrid"}
    assert dists["aerogrid-devkit"].extras & ours == {"aerogrid-cloud"}


def test_no_distribution_imports_a_sibling_it_does_not_declare() -> None:
    assert forbidden_imports(distributions()) == []


@pytest.mark.parametrize("name", ["aerogrid", "aerogrid-devkit", "aerogrid-cloud"])
def test_no_new_import_cycles(name: str) -> None:
    found = cycles(module_graph(distributions()[name]))
    mine = {c for c in KNOWN_CYCLES if next(iter(c)).split(".")[0] == name.replace("-", "_")}
    new = [sorted(c) for c in found - mine]
    gone = [sorted(c) for c in mine - found]
    assert not new, f"import cycles at module level: {new}"
    assert not gone, f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_the_check_sees_what_it_must(tmp_path: Path) -> None:
    """A lazy import is told from a module-level one; a forbidden one is reported."""
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import aerogrid_cloud\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n    import aerogrid_devkit\n"
        "def f():\n    import aerogrid_cloud.kube\n"
    )
    (package / "b.py").write_text("from pkg.a import f\n")
    dist = Distribution("pkg", "pkg", package, frozenset(), frozenset({"aerogrid-cloud"}))
    seen = [(i.module, i.lazy) for i in imports(package / "a.py", "pkg.a")]
    assert seen == [
        ("typing.TYPE_CHECKING", False),
        ("aerogrid_cloud", False),
        ("pkg.b", False),
        ("aerogrid_devkit", True),
        ("aerogrid_cloud.kube", True),
    ]
    assert cycles(module_graph(dist)) == {frozenset({"pkg.a", "pkg.b"})}
    problems = forbidden_imports({"pkg": dist, "aerogrid-cloud": _stub("aerogrid_cloud")})
    assert len(problems) == 1 and "a.py:2 imports aerogrid_cloud at module level" in problems[0]


def _stub(package: str) -> Distribution:
    return Distribution(
        package.replace("_", "-"), package, Path("/nowhere"), frozenset(), frozenset()
    )
