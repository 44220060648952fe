import re
from pathlib import Path

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
