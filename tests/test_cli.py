import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ntkflow.cli import app
from ntkflow.config import load_experiment
from ntkflow.experiment import build_problem

ROOT = Path(__file__).resolve().parents[1]
BAD = sorted((ROOT / "tests" / "configs" / "bad").glob("*.toml"))
runner = CliRunner()

TINY = """
name = "tiny"
[data]
source = "sphere"
n = 8
d = 3
[model]
width = 16
[problem]
alpha = 2.0
centering = "antisymmetric"
"""


def _expect(path):
    # Some files are deliberately not UTF-8 (the encoding corpus); their first line is.
    raw = path.read_bytes()
    utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
    first = raw.decode("utf-16" if utf16 else "utf-8", errors="replace").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def test_bad_corpus_is_large():
    assert len(BAD) >= 100


def _listing(*roots: Path) -> set[str]:
    return {str(p) for root in roots for p in root.rglob("*")}


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
@pytest.mark.parametrize("command", ["certify", "run"])
def test_bad_experiment_one_line_exit_2(path, command, tmp_path, monkeypatch):
    # In an empty working directory, so that a default `[output] dir` would land there.
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path, path.parent)
    result = runner.invoke(app, [command, str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ntkflow: error: ")
    assert _expect(path) in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert _listing(tmp_path, path.parent) == before  # nothing written, not even a lock


def test_certify_table_and_json(tmp_path):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY)
    result = runner.invoke(app, ["certify", str(exp)])
    assert result.exit_code == 0, result.output
    assert "α*" in result.stdout and "Hypotheses fail" in result.stdout
    result = runner.invoke(app, ["certify", str(exp), "--json", "--set", "problem.alpha=1e9"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["alpha"] == 1e9 and d["beta_kind"] == "certified" and d["hypotheses_hold"]


def test_bad_override_and_missing_file(tmp_path):
    result = runner.invoke(app, ["certify", str(tmp_path / "none.toml")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY)
    result = runner.invoke(app, ["certify", str(exp), "--set", "alpha=3"])
    assert result.exit_code == 2 and "--set expects SECTION.KEY=VALUE" in result.stderr


def test_seed_example_parses():
    exp = load_experiment(ROOT / "examples" / "seed.toml")
    assert exp.problem.centering == "antisymmetric" and exp.model.kind == "shallow"
    problem = build_problem(exp)
    assert problem.data.name == "digits(0, 1)" and problem.data.has_test


def test_real_process_exit_code_no_traceback():
    # The installed entry point, as a user runs it: exit 2 and one line on stderr.
    proc = subprocess.run(
        [sys.executable, "-m", "ntkflow", "certify", str(BAD[0])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_run_table_json_and_strict(tmp_path):
    exp = tmp_path / "tiny.toml"
    # (figures: tests/test_results.py and test_plotting.py draw them)
    exp.write_text(TINY + "[flows]\nsaves = 8\ngd_step = 0.05\n[output]\nfigures = false\n")
    # --strict prints the same table, then exits 3: a check failed (see below)
    result = runner.invoke(app, ["run", str(exp), "--strict"])
    assert "Conclusions along the flows" in result.stdout and "exit_time" in result.stdout
    assert result.exit_code == 3, result.output
    # without it, a failed check is a result: exit 0
    result = runner.invoke(app, ["run", str(exp), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert set(d) >= {*("n", "p", "alpha_star", "B_prime", "reasons"), "checks", "exit_time"}
    assert {"gradient", "tangent", "gd"} <= set(d["solver"])
    assert d["solver"]["gradient"]["num_accepted_steps"] > 0
    # Where the results are, and the flows' numbers, without opening summary.json.
    summary = json.loads((Path(d["path"]) / "summary.json").read_text())
    assert d["scalars"] == summary["scalars"] and "final_loss_w" in d["scalars"]
    check = d["checks"][0]
    assert set(check) >= {"name", "holds", "guaranteed", "margin", "t"}
    failed = [c["name"] for c in d["checks"] if c["holds"] is False]
    assert failed == ["exit_time"]  # this α is far below α*: the path leaves the ball


@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_the_save_spacing_reaches_the_trajectories(tmp_path, spacing):
    import numpy as np
    import xarray as xr

    exp = tmp_path / "tiny.toml"
    lines = "[flows]\nsaves = 6\n" + ("" if spacing == "log" else 'spacing = "linear"\n')
    exp.write_text(TINY + lines + "[output]\nfigures = false\nreport = false\n")
    result = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    ts = xr.load_dataset(tmp_path / "r" / "trajectories.nc")["t"].values
    t1 = ts[-1]
    if spacing == "linear":
        np.testing.assert_allclose(ts, np.linspace(0.0, t1, 6))
    else:  # 0, then a constant ratio, the first save well inside the horizon
        ratios = ts[2:] / ts[1:-1]
        np.testing.assert_allclose(ratios, ratios[0])
        assert ts[0] == 0.0 and ts[1] < 1e-3 * t1


def test_a_users_beta_from_the_experiment_file_reaches_json_and_report(tmp_path):
    exp = tmp_path / "user_beta.toml"
    exp.write_text(
        TINY.replace("width = 16", 'kind = "mlp"\nwidths = [16]')
        + "beta = 40.0\n[flows]\nsaves = 4\n[output]\nfigures = false\n"
    )
    result = runner.invoke(app, ["certify", str(exp), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["beta"] == 40.0 and d["beta_kind"] == "user"
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(exp), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "the user's value" in result.stdout
    cert = json.loads((out / "summary.json").read_text())["certificate"]
    assert cert["beta_kind"] == "user" and cert["beta"] == 40.0
    assert any("the user's value, not proved by ntkflow" in n for n in cert["notes"])
    assert cert["beta_estimates"][0] == {**cert["beta_estimates"][0], "kind": "user"}
    html = (out / "report.html").read_text()
    assert "the user&#x27;s value: the proof rests on it" in html or (
        "the user's value: the proof rests on it" in html
    )


@pytest.mark.parametrize("section", ["data", "model"])
def test_the_tagged_sections_tags_are_named_once(section):
    # The discriminated unions' tags (what pydantic lists for a bad tag) are TAGGED's.
    from ntkflow.config import TAGGED, ConfigError, parse_experiment

    key, default, classes = TAGGED[section]
    with pytest.raises(ConfigError) as info:
        parse_experiment({section: {key: "nonesuch"}})
    listed = str(info.value).split("must be one of ")[1].split(", got")[0]
    assert sorted(t.strip(" '") for t in listed.split(",")) == sorted(classes)
    assert type(getattr(parse_experiment({}), section)) is classes[default]
