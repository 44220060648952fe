"""The package's structure (issue 12): imports go one way — no import cycle among
ntkflow's modules, counting imports inside functions too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "ntkflow").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """`module → modules it imports` (relative or absolute, at any depth of the file)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif isinstance(node, ast.ImportFrom) and node.module:
                target = node.module
            else:
                continue
            names = [target] + [f"{target}.{a.name}" for a in node.names]
            graph[name] |= {t for t in names if t in mods and t != name}
    return graph


def _cycles(graph: dict[str, set[str]], mods: dict[str, Path]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan). A package's
    `__init__` re-exporting its own submodules is not an edge of a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def edges(v: str) -> list[str]:
        init = mods[v].name == "__init__.py"
        return [w for w in graph[v] if not (init and w.startswith(v + "."))]

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                out.append(sorted([v, *comp]))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    mods = _modules()
    assert len(mods) > 20  # the walk found the package
    assert _cycles(_import_graph(mods), mods) == []


def test_the_cycle_check_finds_a_cycle():
    # The checker itself: a planted cycle through a function-level import is found.
    mods = {"p.a": Path("a.py"), "p.b": Path("b.py")}
    assert _cycles({"p.a": {"p.b"}, "p.b": {"p.a"}}, mods) == [["p.a", "p.b"]]
    assert _cycles({"p.a": {"p.b"}, "p.b": set()}, mods) == []


# One concept per module, small functions (docs/architecture.md, CONTRIBUTING.md).
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 150


def _sizes() -> tuple[dict[str, int], dict[str, int]]:
    modules, functions = {}, {}
    for name, path in _modules().items():
        text = path.read_text()
        modules[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                functions[f"{name}.{node.name}"] = node.end_lineno - node.lineno + 1
    return modules, functions


def test_modules_and_functions_are_small():
    modules, functions = _sizes()
    assert max(functions.values()) > 20  # the walk measured real functions
    big = {m: n for m, n in modules.items() if n > MAX_MODULE_LINES}
    long = {f: n for f, n in functions.items() if n > MAX_FUNCTION_LINES}
    assert big == {}, f"modules over {MAX_MODULE_LINES} lines: {big}"
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
