"""The architecture's limits, read from the source (no servers, no subprocesses):

* no module of framework/, worker/ or providers/ is over 400 lines;
* no function or method takes more than 8 parameters (``self``/``cls``, ``*args`` and
  ``**kwargs`` not counted): a wider call takes one frozen dependencies object;
* no import cycle between those modules, counting imports inside functions and under
  ``if TYPE_CHECKING:`` (a cycle in the design even where Python tolerates it at run time);
* each side of framework/ is a package whose ``__init__`` declares ``__all__``, every
  name of which resolves.

Each check lists every offender in its failure message.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = ("framework", "worker", "providers")
SIDES = ("framework.core", "framework.polling", "framework.consuming", "framework.trust",
         "framework.testing")
MAX_MODULE_LINES = 400
MAX_PARAMETERS = 8

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. framework.core.clock; a package is named by its __init__'s package
    path: Path
    is_package: bool

    def relative_path(self) -> str:
        return str(self.path.relative_to(REPO_ROOT))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def source_modules() -> tuple[Module, ...]:
    paths = sorted(p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py"))
    return tuple(Module(module_name(p), p, p.name == "__init__.py") for p in paths)


@cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# --- module size ---------------------------------------------------------------------------


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_is_over_400_lines() -> None:
    offenders = [f"{m.relative_path()}: {lines} lines"
                 for m in source_modules() if (lines := line_count(m.path)) > MAX_MODULE_LINES]
    assert not offenders, "modules over 400 lines:\n" + "\n".join(offenders)


# --- parameters ----------------------------------------------------------------------------


def counted_parameters(function: FunctionNode, *, in_class: bool) -> int:
    """Named parameters, without a method's leading ``self``/``cls``; ``*args`` and
    ``**kwargs`` are not counted."""
    positional = [*function.args.posonlyargs, *function.args.args]
    if in_class and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    return len(positional) + len(function.args.kwonlyargs)


def functions_in(node: ast.AST, *, in_class: bool = False) -> Iterator[tuple[FunctionNode, bool]]:
    """Every function and method below ``node``, with whether it is defined in a class body."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, FunctionNode):
            yield child, in_class
        yield from functions_in(child, in_class=isinstance(child, ast.ClassDef))


def test_no_function_takes_more_than_8_parameters() -> None:
    offenders = [
        f"{module.relative_path()}:{function.lineno} {function.name}: {count} parameters"
        for module in source_modules()
        for function, in_class in functions_in(parse(module.path))
        if (count := counted_parameters(function, in_class=in_class)) > MAX_PARAMETERS
    ]
    assert not offenders, "functions over 8 parameters:\n" + "\n".join(offenders)


def test_parameter_count_skips_self_and_variadics() -> None:
    tree = ast.parse(
        "class A:\n"
        "    def m(self, a, /, b, *args, c, **kwargs): ...\n"
        "    @staticmethod\n"
        "    def s(x, y): ...\n"
        "def f(self, a): ...\n"
    )
    counts = {f.name: counted_parameters(f, in_class=c) for f, c in functions_in(tree)}
    assert counts == {"m": 3, "s": 2, "f": 2}


# --- import cycles -------------------------------------------------------------------------


def absolute_base(node: ast.ImportFrom, module: Module) -> str:
    """The module a ``from ... import`` names, with a relative import made absolute."""
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".")
    anchor = package if module.is_package else package[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def imported_names(node: ast.Import | ast.ImportFrom, module: Module) -> Iterator[list[str]]:
    """For each name an import statement binds, its candidate modules, most specific
    first: ``from a import b`` names the module ``a.b`` or else an attribute of ``a``;
    ``import a.b.c`` names ``a.b.c`` (or the nearest package, outside the project)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            yield [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
        return
    base = absolute_base(node, module)
    for alias in node.names:
        yield [f"{base}.{alias.name}", base]


def imports_in(tree: ast.Module, module: Module, known: frozenset[str]) -> set[str]:
    """The project modules that ``module`` imports anywhere (top level, functions,
    ``TYPE_CHECKING`` blocks)."""
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for candidates in imported_names(node, module):
                targets.update([c for c in candidates if c in known][:1])
    targets.discard(module.name)
    return targets


def import_graph() -> dict[str, set[str]]:
    known = frozenset(m.name for m in source_modules())
    return {m.name: imports_in(parse(m.path), m, known) for m in source_modules()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for successor in graph[todo.pop()] - seen:
            seen.add(successor)
            todo.append(successor)
    return seen


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module: a module on a cycle
    reaches itself, and its component is every module it reaches that reaches it back."""
    reach = {module: reachable(graph, module) for module in graph}
    components = {
        frozenset(other for other in reach[module] if module in reach[other])
        for module in graph if module in reach[module]
    }
    return sorted(sorted(component) for component in components if len(component) > 1)


def describe_cycle(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    edges = [f"    {a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return " <-> ".join(component) + "\n" + "\n".join(edges)


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe_cycle(c, graph) for c in cycles)


def test_cycle_finder_finds_only_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": {"f"},
             "g": set()}
    assert import_cycles(graph) == [["a", "b", "c"], ["d", "e"]]


def test_import_graph_sees_relative_function_and_type_checking_imports() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import helper\n"
        "import pkg.top\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.sub.typed import Hint\n"
        "def late():\n"
        "    from pkg import lazy, top\n"
        "    import json.decoder\n"
    )
    module = Module("pkg.sub.mod", REPO_ROOT / "pkg" / "sub" / "mod.py", is_package=False)
    known = frozenset({"pkg", "pkg.top", "pkg.lazy", "pkg.other", "pkg.sub", "pkg.sub.mod",
                       "pkg.sub.sibling", "pkg.sub.typed"})
    assert imports_in(tree, module, known) == {
        "pkg.sub.sibling", "pkg.other", "pkg.top", "pkg.sub.typed", "pkg.lazy"}


# --- public surfaces -----------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
def test_side_declares_a_public_surface_that_resolves(side: str) -> None:
    init = REPO_ROOT.joinpath(*side.split("."), "__init__.py")
    assert init.is_file(), f"{side} is not a package"
    package = importlib.import_module(side)
    exported = getattr(package, "__all__", None)
    assert isinstance(exported, list | tuple) and exported, f"{side} declares no __all__"
    assert all(isinstance(name, str) for name in exported)
    assert len(set(exported)) == len(exported), f"{side}.__all__ repeats a name"
    missing = [name for name in exported if not hasattr(package, name)]
    assert not missing, f"{side}.__all__ names what it does not define: {missing}"
