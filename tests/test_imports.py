"""The shape of `src/ias` read from its source: the import graph is layered and has no
cycles, and functions stay short and narrow (issue 16). Nothing here imports the package,
so a heavy extra that is missing cannot hide a module from the check."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "ias"

#: Low to high. A module may import its own layer and those below, never one above. The
#: longest matching name wins (`calibration.rollout` before `calibration`); `ias` is the
#: package itself (its `__init__` re-exports the API). docs/architecture.md shows the same table.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("errors", "types", "records", "metrics", "confidence", "figures", "version")),
    ("parts", ("tasks", "policy", "prm", "prompting", "models", "gguf")),
    ("algorithms", ("scaling", "calibration", "methods")),
    (
        "stages",
        (
            "runner",
            "stage",
            "executors",
            "ray_executor",
            "evaluation",
            "solver",
            "report",
            "specs",
            "loaders",
            "zoo",
            "calibration.rollout",
        ),
    ),
    ("api", ("api",)),
    ("front", ("cli", "serve", "demo", "ias")),
)

#: Imports against the layers, each until its owner moves the code: (importer, imported) ->
#: why, and the fix. An entry that no longer occurs fails the test, so the list only shrinks.
EXCEPTIONS: dict[tuple[str, str], str] = {}

#: Function-level imports that close a cycle, allowed: a registry that imports a backend's
#: module on first use (the module registers or is looked up by name) or an optional extra.
#: Any other lazy import that closes a cycle hides it, where moving code would remove it.
LAZY_CYCLES: dict[tuple[str, str], str] = {
    ("prm.base", "prm.hf"): "registry: `load_prm` imports the transformers backend on first use",
    ("tasks.base", "tasks.arith"): "registry: `get_task` imports the built-in task on first use",
    ("tasks.base", "tasks.files"): "registry: `get_task` imports the file-backed tasks on first use",
    ("executors", "ray_executor"): "the `ray` extra: `open_executor` imports it only for --executor ray",
}

MAX_LINES, MAX_PARAMS = 60, 12
#: Argparse tables, long by nature: these, and any function whose statements only add
#: arguments (`_ARGPARSE_CALLS`, maybe assigned, and a final `return`).
ARGPARSE_TABLES = {("cli", "build_parser"), ("cli", "_serve_parser")}
_ARGPARSE_CALLS = {
    "add_argument",
    "add_argument_group",
    "add_mutually_exclusive_group",
    "add_parser",
    "add_subparsers",
    "set_defaults",
}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    top: bool  # run when the importer is imported (not inside a function, not TYPE_CHECKING)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "ias"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """`ias.a.b.c` (a module or a name in one) as the known module it lands in, relative to `ias.`."""
    if name == "ias":
        return "ias"
    if not name.startswith("ias."):
        return None
    name = name[len("ias.") :]
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or "ias"


def _targets(node: ast.Import | ast.ImportFrom, module: str, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the importer's package
        package = ["ias", *module.split(".")] if module != "ias" else ["ias"]
        if path.name != "__init__.py":
            package.pop()
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([base] if base else [])])
    # `from ias.a import b` imports module ias.a.b where there is one, else a name of ias.a.
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import of a module with whether it runs at import time."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, top))
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            top = False
        elif isinstance(node, ast.If) and _is_type_checking(node):
            top = False
        for child in ast.iter_child_nodes(node):
            visit(child, top)

    visit(tree, True)
    return found


def import_graph() -> list[Edge]:
    known = modules()
    edges = set()
    for module, path in known.items():
        for node, top in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _targets(node, module, path):
                imported = _resolve(target, known)
                if imported is not None and imported != module:
                    edges.add(Edge(module, imported, node.lineno, top))
    return sorted(edges, key=lambda e: (e.importer, e.imported, e.line))


def layer_of(module: str) -> int:
    best, level = -1, None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), index
    if level is None:
        raise AssertionError(f"module ias.{module} is in no layer: add it to LAYERS and docs/architecture.md")
    return level


def upward(edges: list[Edge]) -> dict[tuple[str, str], Edge]:
    """The imports from a lower layer to a higher one."""
    found: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        if layer_of(edge.importer) < layer_of(edge.imported):
            found.setdefault((edge.importer, edge.imported), edge)
    return found


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components (more than one module) of the top-level import graph."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.top:
            graph.setdefault(edge.importer, set()).add(edge.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


@dataclass(frozen=True)
class Function:
    module: str
    name: str  # qualified within its module: Class.method, outer.inner
    node: ast.FunctionDef | ast.AsyncFunctionDef
    public: bool  # no leading underscore (dunders count) on it or its class, not nested in a function

    @property
    def lines(self) -> int:
        return (self.node.end_lineno or self.node.lineno) - self.node.lineno + 1

    @property
    def params(self) -> int:
        """Named parameters, `self`/`cls` not counted (`*args`/`**kwargs` are not named)."""
        args = self.node.args
        return sum(a.arg not in ("self", "cls") for a in (*args.posonlyargs, *args.args, *args.kwonlyargs))


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def functions_of(module: str, tree: ast.Module) -> list[Function]:
    found: list[Function] = []

    def visit(node: ast.AST, prefix: str, public: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append(Function(module, prefix + child.name, child, public and _public(child.name)))
                visit(child, f"{prefix}{child.name}.", False)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", public and _public(child.name))
            else:
                visit(child, prefix, public)

    visit(tree, "", True)
    return found


def functions() -> list[Function]:
    return [
        f
        for module, path in modules().items()
        for f in functions_of(module, ast.parse(path.read_text(encoding="utf-8")))
    ]


def _adds_arguments(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Return):
        return statement.value is None or isinstance(statement.value, ast.Name)
    value = statement.value if isinstance(statement, (ast.Expr, ast.Assign)) else None
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in _ARGPARSE_CALLS


def is_argparse_table(function: Function) -> bool:
    if (function.module, function.name) in ARGPARSE_TABLES:
        return True
    body = function.node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return any(not isinstance(statement, ast.Return) for statement in body) and all(
        _adds_arguments(statement) for statement in body
    )


def _shown(module: str) -> str:
    name = module if module == "ias" else f"ias.{module}"
    return f"{name} ({LAYERS[layer_of(module)][0]})"


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


def test_no_import_cycle_at_import_time():
    found = cycles(import_graph())
    assert not found, f"top-level import cycles: {found}"


def test_no_lower_layer_imports_a_higher_one():
    found = upward(import_graph())
    unexpected = [
        f"{_shown(e.importer)} imports {_shown(e.imported)} at line {e.line}"
        for key, e in found.items()
        if key not in EXCEPTIONS
    ]
    assert not unexpected, "imports against the layers:\n" + "\n".join(unexpected)
    stale = [key for key in EXCEPTIONS if key not in found]
    assert not stale, f"exceptions that no longer occur (remove them): {stale}"


def lazy_cycles(edges: list[Edge], excepted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The function-level imports a -> b where b (through any imports but the `excepted`)
    imports a: cycles that only laziness keeps from failing at import time."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if (edge.importer, edge.imported) not in excepted:
            graph.setdefault(edge.importer, set()).add(edge.imported)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    return {
        (e.importer, e.imported)
        for e in edges
        if not e.top and (e.importer, e.imported) not in excepted and reaches(e.imported, e.importer)
    }


def test_lazy_imports_hide_no_cycle():
    found = lazy_cycles(import_graph(), set(EXCEPTIONS))
    hidden = sorted(found - set(LAZY_CYCLES))
    assert not hidden, f"function-level imports that close a cycle (move code instead): {hidden}"
    stale = sorted(set(LAZY_CYCLES) - found)
    assert not stale, f"allowed lazy cycles that no longer occur (remove them): {stale}"


def test_the_checks_can_fail():
    """The graph reader sees what the checks rely on: function-level and relative imports,
    TYPE_CHECKING blocks as not run, an upward import and a cycle."""
    tree = ast.parse(
        "import ias.errors\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ias.api\n"
        "def f():\n    from ias.cli import main\n"
    )
    seen = [(node.lineno, top) for node, top in _imports(tree)]
    assert seen == [(1, True), (2, True), (4, False), (6, False)]
    node = ast.parse("from ..records import write_json").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _targets(node, "calibration.store", PACKAGE / "calibration" / "store.py")[0] == "ias.records"
    assert list(upward([Edge("records", "api", 1, False)])) == [("records", "api")]
    assert cycles([Edge("a", "b", 1, True), Edge("b", "a", 1, True)]) == [["a", "b"]]
    assert cycles([Edge("a", "b", 1, True), Edge("b", "a", 1, False)]) == []
    assert lazy_cycles([Edge("a", "b", 1, True), Edge("b", "a", 1, False)], set()) == {("b", "a")}
    assert lazy_cycles([Edge("a", "b", 1, True), Edge("b", "a", 1, False)], {("a", "b")}) == set()


def test_functions_are_short_and_narrow():
    """At most 60 lines (argparse tables aside) and, if public, at most 12 parameters."""
    long = [
        f"ias.{f.module}.{f.name}: {f.lines} lines"
        for f in functions()
        if f.lines > MAX_LINES and not is_argparse_table(f)
    ]
    wide = [
        f"ias.{f.module}.{f.name}: {f.params} parameters" for f in functions() if f.public and f.params > MAX_PARAMS
    ]
    assert not long + wide, f"over {MAX_LINES} lines or {MAX_PARAMS} parameters:\n" + "\n".join(long + wide)


_SIZES = """
class A:
    def __init__(self, a, b, *c, d, **e): pass
    def _m(self): pass
class _B:
    def m(self): pass
def f():
    def g(): pass
def table(parser):
    "Flags."
    group = parser.add_argument_group("x")
    group.add_argument("--y")
    return group
def other(parser):
    parser.add_argument("--y")
    print(parser)
def __enter__(self):
    return self
"""


def test_the_size_checks_can_fail():
    found = {f.name: f for f in functions_of("m", ast.parse(_SIZES))}
    assert {name: f.public for name, f in found.items()} == {
        "A.__init__": True,
        "A._m": False,
        "_B.m": False,
        "f": True,
        "f.g": False,
        "table": True,
        "other": True,
        "__enter__": True,
    }
    assert found["A.__init__"].params == 3 and found["f"].lines == 2
    assert is_argparse_table(found["table"]) and not is_argparse_table(found["other"])
    assert not is_argparse_table(found["__enter__"])
