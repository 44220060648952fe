import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python example"
    assert len(blocks[0].strip().splitlines()) <= 15
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "α*=" in out and "σ_min=" in out and "exit time T:" in out


def test_experiment_docs_cover_every_key():
    from ntkflow import config

    text = (ROOT / "docs" / "experiments.md").read_text()
    for section in (
        config.DigitsData,
        config.SphereData,
        config.FileData,
        config.ShallowModel,
        config.MLPModel,
        config.ProblemSection,
        config.FlowsSection,
        config.OutputSection,
    ):
        for key in section.model_fields:
            if key not in ("source", "kind"):
                assert f"`{key}`" in text, f"docs/experiments.md misses {section.__name__}.{key}"


def test_architecture_lists_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    src = ROOT / "src" / "ntkflow"
    for path in src.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py") and path.parent != src:
            continue
        rel = path.relative_to(src).as_posix()
        if rel == "__main__.py":
            continue
        assert f"`{rel}`" in text, f"docs/architecture.md misses {rel}"
    # ... and lists no module that is gone: every `something.py` in its table exists.
    import re

    table = text[text.index("## Modules") :]
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", table, flags=re.M))
    assert len(listed) > 30  # the pattern still reads the table
    stale = sorted(m for m in listed if not (src / m).is_file())
    assert stale == [], f"docs/architecture.md lists modules that do not exist: {stale}"


def test_figures_doc_covers_every_figure_and_readme_images_exist():
    from ntkflow.plotting import FIGURES

    text = (ROOT / "docs" / "figures.md").read_text()
    for name, _, _, caption in FIGURES:
        assert f"`{name}.png`" in text and caption in text, name
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images
    for image in images:
        assert (ROOT / image).is_file(), image


# -- docs/theory.md: every cited section exists -------------------------------------------

THEORY = ROOT / "docs" / "theory.md"
# Where citations of docs/theory.md may appear.
CITING = ("src", "docs", "tests", "examples", "bench", "README.md", "CONTRIBUTING.md")
# Derived or ignored trees: not the project's own text.
NOT_PROJECT = {
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "build",
    "dist",
}
# The statements the code and docs rely on, each of which must have its own section.
REQUIRED_SECTIONS = (
    "Notation",
    "The two gradient flows",
    "The tangent flow in closed form",
    "The exponential integrator",
    "The theorem",
    "The proof's quantities",
    "The ball lemma",
    "Loss decay inside the ball",
    "Path length inside the ball",
    "The path never leaves the ball",
    "Smoothness",
    "Shallow network, output weights fixed",
    "Shallow network, both layers trained",
    "Estimates for other models",
    "Scale and centring",
    "Subtract and antisymmetric",
    "Numerical rank",
    "What verified means",
    "The three-way decision",
    "Truncated and diverged solves",
    "Rounding",
)
# A template, not a citation: CONTRIBUTING.md shows the citation form with it.
PLACEHOLDERS = {"Section"}

# The path (or the Markdown link `[docs/theory.md](docs/theory.md)`), a comma, then one or
# more quoted section names, straight or curly, joined by `,`, `and` or `, and`. A
# citation may wrap across lines, Python comment lines included.
_GAP = r"[\s#]*"
_NAME = r'(?:"[^"]{1,80}"|“[^”]{1,80}”)'
_JOIN = _GAP + r"(?:,?" + _GAP + r"and|,)" + _GAP
_CITATION = re.compile(
    r"docs/theory\.md(?:\]\(docs/theory\.md\))?`?," + _GAP + rf"({_NAME}(?:{_JOIN}{_NAME})*)"
)
# After the path, anything that looks like the start of a quoted name: every such place
# must parse as a citation (so a name in other quotes cannot slip through).
_QUOTED_AFTER = re.compile(r"docs/theory\.md(?:\]\(docs/theory\.md\))?`?," + _GAP + "[\"“'‘]")


def _cited_sections(text: str) -> list[str]:
    """The section names cited in `text`, whitespace and comment markers normalised."""
    parsed = {m.start() for m in _CITATION.finditer(text)}
    for m in _QUOTED_AFTER.finditer(text):
        assert m.start() in parsed, f"unparsed citation: {text[m.start() : m.start() + 80]!r}"
    names = []
    for m in _CITATION.finditer(text):
        for straight, curly in re.findall(r'"([^"]*)"|“([^”]*)”', m.group(1)):
            names.append(" ".join((straight or curly).replace("#", " ").split()))
    return names


def _headings(text: str) -> set[str]:
    """The `##` and `###` headings of a Markdown text (outside fenced code)."""
    out, fenced = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{2,3} (.+?)\s*$", line)):
            out.add(m.group(1))
    return out


def _files(*roots: Path):
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            rel = path.relative_to(ROOT).parts
            if path.is_file() and not any(
                p in NOT_PROJECT or p.startswith(".venv") or p.endswith(".egg-info") for p in rel
            ):
                yield path


def test_citation_parser_catches_every_form():
    cite = "docs/" + "theory.md"  # split, so this file cites nothing itself
    assert _cited_sections(f'see {cite}, "Notation")') == ["Notation"]
    assert _cited_sections(f"({cite}, “The theorem”)") == ["The theorem"]
    assert _cited_sections(f'[{cite}]({cite}), "Notation":') == ["Notation"]
    assert _cited_sections(f'({cite},\n    "Scale and\n    centring")') == ["Scale and centring"]
    assert _cited_sections(f'# {cite},\n# "The proof\'s\n# quantities"') == [
        "The proof's quantities"
    ]
    assert _cited_sections(f'({cite}, "A", "B" and "C"; "D")') == ["A", "B", "C"]
    assert _cited_sections(f'{cite}, "A", and “B”') == ["A", "B"]
    assert _cited_sections(f"a bare [{cite}]({cite}): the mathematics") == []
    with pytest.raises(AssertionError, match="unparsed citation"):
        _cited_sections(f"{cite}, 'Notation'")
    # A wrong name is found, and is not a heading.
    assert "No such section" not in _headings(THEORY.read_text())
    assert _cited_sections(f'{cite}, "No such section"') == ["No such section"]


def test_every_theory_citation_resolves():
    headings = _headings(THEORY.read_text())
    cited: dict[str, list[str]] = {}
    for path in _files(*(ROOT / p for p in CITING)):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for name in _cited_sections(text):
            cited.setdefault(name, []).append(path.relative_to(ROOT).as_posix())
    assert cited, "no citation of docs/theory.md found: is the pattern still right?"
    missing = {
        name: sorted(set(where))
        for name, where in cited.items()
        if name not in headings and name not in PLACEHOLDERS
    }
    assert not missing, f"cited sections that docs/theory.md lacks: {missing}"


def test_theory_has_a_section_for_every_topic():
    text = THEORY.read_text()
    headings = _headings(text)
    assert not [s for s in REQUIRED_SECTIONS if s not in headings]
    # The constants of theorem_constants, as the page derives them.
    for formula in ("1152", "3 · sqrt(8 σ_max² R0)", "σ_min/(2β)", "2c₂ r² + 2c₁ r − σ_min"):
        assert formula in text, formula


def test_no_reference_to_a_missing_theory_file():
    needle = b"THEORY" + b".md"  # spelt so that this file does not hold it
    offenders = [
        path.relative_to(ROOT).as_posix() for path in _files(ROOT) if needle in path.read_bytes()
    ]
    assert not offenders, f"{needle.decode()} (the project has docs/theory.md): {offenders}"


def test_no_library_error_speaks_in_cli_flags():
    """Errors and warnings raised outside the CLI name the argument or the experiment key
    (`out`, `jobs`, `resume`, `[output] dir`), never a flag the API user never typed."""
    import ast

    flag = re.compile(r"(?<![\w-])--[a-z]")
    found = []
    for path in (ROOT / "src" / "ntkflow").rglob("*.py"):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            is_warning = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "warn"
            )
            if not (isinstance(node, ast.Raise) or is_warning):
                continue
            for sub in ast.walk(node):
                if not isinstance(sub, ast.Constant):
                    continue
                if isinstance(sub.value, str) and flag.search(sub.value):
                    found.append(f"{path.name}:{sub.lineno}: {sub.value!r}")
    assert not found, found


def test_every_public_name_the_docs_use_resolves():
    # `nf.X` / `ntkflow.X` in the README and docs/ (issue 12: a redesign keeps every
    # public name users have).
    import ntkflow

    texts = [(ROOT / "README.md").read_text()]
    texts += [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
    names = set()
    for text in texts:
        names |= set(re.findall(r"\b(?:nf|ntkflow)\.([A-Za-z_][\w.]*\w)", text))
    assert len(names) >= 10  # the pattern still finds them
    for name in sorted(names):
        obj = ntkflow
        for part in name.split("."):
            assert hasattr(obj, part), f"ntkflow.{name} (named in the docs) does not exist"
            obj = getattr(obj, part)


def test_the_api_reference_documents_every_public_name():
    # Every public object of ntkflow, ntkflow.models, ntkflow.datasets and ntkflow.predict
    # is rendered from its docstring by a `::: path` line of docs/api/*.md (a top-level
    # re-export such as ntkflow.MLP counts when its object is documented elsewhere).
    import importlib

    from helpers import public_objects

    paths = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        paths |= set(re.findall(r"^::: (\S+)$", page.read_text(), flags=re.M))
    documented = []
    for path in sorted(paths):
        module, _, name = path.rpartition(".")
        documented.append(getattr(importlib.import_module(module), name))
    objects = public_objects()
    assert len(objects) > 100
    for obj, names in objects.values():
        assert any(obj is d for d in documented), f"{names} in no docs/api/*.md page"


def test_the_site_config_lists_every_page_and_tutorial():
    config = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    pages += [
        p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs" / "tutorials").glob("*.py")
    ]
    for page in pages:
        assert f": {page}\n" in config, f"mkdocs.yml's nav misses docs/{page}"
