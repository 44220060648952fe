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
MAX_FUNCTION_LINES = 100


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


# Each quantity of the flows is named once (issue 29): `_quantities` defines the series'
# and the flow scalars' names with their meanings; everyone else reads them from there.
def _quantity_names() -> tuple[set[str], dict[str, str]]:
    from ntkflow._quantities import FLOW_SCALARS, SERIES

    meanings = {name: s.meaning for name, s in SERIES.items()}
    meanings.update({name: s.meaning for name, s in FLOW_SCALARS.items()})
    return set(SERIES) | set(FLOW_SCALARS), meanings


def _restated_lists(names: set[str]) -> list[tuple[str, int, list[str]]]:
    """Literal tuples, lists, sets and dicts (keys) of three or more quantity names
    outside `_quantities.py`: a list of the quantities written out again."""
    out = []
    for path in (ROOT / "ntkflow").rglob("*.py"):
        if path.name == "_quantities.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
                elts = node.keys if isinstance(node, ast.Dict) else node.elts
                hits = [e.value for e in elts if isinstance(e, ast.Constant) and e.value in names]
                if len(hits) >= 3:
                    out.append((path.name, node.lineno, hits))
    return out


def test_each_quantity_is_named_once():
    names, meanings = _quantity_names()
    assert {"loss_w", "gap_f", "step_gap_w", "sup_dist_w", "final_loss_u"} <= names
    assert _restated_lists(names) == []
    # Its meaning is written in `_quantities.py` only (the files' `long_name` come from it).
    for path in (ROOT / "ntkflow").rglob("*.py"):
        if path.name != "_quantities.py":
            text = path.read_text()
            again = [n for n, m in meanings.items() if len(m) > 12 and f'"{m}"' in text]
            assert again == [], f"{path.name} restates the meaning of {again}"


def test_the_restated_list_check_finds_one(tmp_path, monkeypatch):
    # The checker itself: a planted list of three names is found.
    planted = tmp_path / "ntkflow"
    planted.mkdir()
    (planted / "_planted.py").write_text('KEEP = ("loss_w", "dist_w", "gap_f")\n')
    import sys

    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    names, _ = _quantity_names()
    assert _restated_lists(names) == [("_planted.py", 1, ["loss_w", "dist_w", "gap_f"])]


def test_every_series_is_found_on_the_typed_paths():
    # Each `SERIES` entry's dotted path names fields of the typed records, in order.
    import dataclasses
    import typing

    from ntkflow._quantities import SERIES
    from ntkflow._solution import FlowSolution

    def record(tp) -> type | None:
        args = typing.get_args(tp) or (tp,)
        return next((a for a in args if isinstance(a, type) and dataclasses.is_dataclass(a)), None)

    for name, series in SERIES.items():
        cls: type | None = FlowSolution
        for part in series.at.split("."):
            assert cls is not None, f"{name}: {series.at} goes past a leaf"
            hints = typing.get_type_hints(cls)
            assert part in hints, f"{name}: {cls.__name__} has no field {part!r}"
            cls = record(hints[part])
