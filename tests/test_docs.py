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
