"""Bad input on the command line: one line, exit 2, nothing written (issue 11).

Every option of `certify`, `run`, `sweep`, `report` and `demo` given a wrong type, an
impossible value, a path that is a file or a directory, unreadable or damaged results:
each case must answer with exactly one line `ntkflow: error: …` on stderr naming the
argument, the value and the fix, exit 2, print nothing on stdout and leave the working
directory exactly as it was (no results, no lock file, no partial directory). The
malformed experiment files live in `tests/configs/bad/` (tested in `test_cli.py`); the
concurrent-writer and signal cases run real `ntkflow` processes.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ntkflow as nf
from ntkflow.cli import app
from ntkflow.config import load_experiment

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "configs" / "bad"
runner = CliRunner()

TINY = """\
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
[flows]
saves = 4
"""
SWEEP = TINY + '[sweep]\n"problem.alpha" = [1.0, 2.0]\n'


def _results_dir(path: Path, *, summary: object = None, nc: bytes | None = None) -> Path:
    """A results directory that `load_results` accepts (unless damaged by the caller);
    its summary lacks what the figures read, so rendering it fails."""
    import xarray as xr

    path.mkdir()
    ds = xr.Dataset({"loss_w": ("t", np.array([1.0, 0.5]))}, coords={"t": [0.0, 1.0]})
    ds.to_netcdf(path / "trajectories.nc", engine="h5netcdf")
    if nc is not None:
        (path / "trajectories.nc").write_bytes(nc)
    if summary is None:
        summary = {"format": "ntkflow-results/1", "name": "x", "certificate": {}, "complete": True}
    text = summary if isinstance(summary, str | bytes) else json.dumps(summary)
    data = text if isinstance(text, bytes) else text.encode()
    (path / "summary.json").write_bytes(data)
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A working directory holding every input the cases name (relative paths)."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / "tiny.toml").write_text(TINY)
    (ws / "sweep.toml").write_text(SWEEP)
    (ws / "bom.toml").write_bytes(b"\xef\xbb\xbf" + TINY.encode())
    (ws / "afile").write_text("not a directory")
    (ws / "adir").mkdir()
    (ws / "foreign").mkdir()
    (ws / "foreign" / "thesis.tex").write_text("precious")
    (ws / "demo_foreign" / "below-alpha-star").mkdir(parents=True)
    (ws / "demo_foreign" / "below-alpha-star" / "notes.txt").write_text("mine")
    ok = _results_dir(ws / "res_ok")
    good = (ok / "summary.json").read_text()
    nc = (ok / "trajectories.nc").read_bytes()
    _results_dir(ws / "res_truncated_nc", nc=nc[:100])
    _results_dir(ws / "res_garbage_nc", nc=b"garbage")
    _results_dir(ws / "res_bad_json", summary="{")
    _results_dir(ws / "res_truncated_json", summary=good[: len(good) // 2])
    _results_dir(ws / "res_latin1_json", summary=b'{"name": "caf\xe9"}')
    _results_dir(ws / "res_list_json", summary="[1, 2]")
    _results_dir(ws / "res_incomplete", summary={"format": "ntkflow-results/1"})
    _results_dir(
        ws / "res_no_certificate", summary={"format": "ntkflow-results/1", "complete": True}
    )
    (_results_dir(ws / "res_no_nc") / "trajectories.nc").unlink()
    summary_dir = _results_dir(ws / "res_summary_dir")
    (summary_dir / "summary.json").unlink()
    (summary_dir / "summary.json").mkdir()
    return ws


@pytest.fixture
def unwritable(workspace) -> str:
    """A path whose parent cannot be created: a read-only directory (as a user), or
    sysfs (as root, who may write anywhere else)."""
    if os.geteuid() != 0:
        locked = workspace / "locked"
        locked.mkdir(exist_ok=True)
        locked.chmod(0o555)
        return "locked/sub/res"
    try:
        os.mkdir("/sys/ntkflow-bad-input")
    except OSError:
        return "/sys/ntkflow-bad-input/res"
    os.rmdir("/sys/ntkflow-bad-input")
    pytest.skip("no unwritable directory here")


# (id, arguments, a substring of the one-line error). `{unwritable}` is filled in.
CASES = [
    # -- the experiment argument
    ("missing_file", ["certify", "none.toml"], "experiment file 'none.toml' does not exist"),
    ("directory", ["certify", "adir"], "experiment file 'adir' is a directory, expected a file"),
    ("empty_path", ["certify", ""], "experiment file '.' is a directory, expected a file"),
    ("missing_argument", ["certify"], "missing argument EXPERIMENT; see `ntkflow certify --help`"),
    ("extra_argument", ["certify", "tiny.toml", "more.toml"], "unexpected extra argument"),
    ("unknown_option", ["certify", "tiny.toml", "--bogus"], "No such option: --bogus"),
    ("unknown_command", ["bogus"], "No such command 'bogus'; see `ntkflow --help`"),
    ("flag_with_value", ["certify", "tiny.toml", "--json=yes"], "does not take a value"),
    ("run_missing_argument", ["run"], "missing argument EXPERIMENT; see `ntkflow run --help`"),
    ("sweep_missing_file", ["sweep", "none.toml"], "experiment file 'none.toml' does not exist"),
    # -- --set syntax and values
    ("set_no_equals", ["certify", "tiny.toml", "--set", "problem.alpha"], "--set expects"),
    ("set_no_section", ["certify", "tiny.toml", "--set", "alpha=3"], "(e.g. problem.alpha=3)"),
    ("set_empty_key", ["certify", "tiny.toml", "--set", "=3"], "--set expects SECTION.KEY=VALUE"),
    ("set_three_parts", ["certify", "tiny.toml", "--set", "problem.alpha.x=3"], "--set expects"),
    ("set_empty_name", ["certify", "tiny.toml", "--set", "problem.=3"], "--set expects"),
    ("set_section", ["certify", "tiny.toml", "--set", "data=3"], "'data' is a section"),
    ("set_no_argument", ["certify", "tiny.toml", "--set"], "Option '--set' requires an argument"),
    (
        "set_unknown_section",
        ["certify", "tiny.toml", "--set", "solver.rtol=1"],
        "unknown key 'solver'",
    ),
    ("set_unknown_key", ["certify", "tiny.toml", "--set", "model.widht=3"], "unknown key 'widht'"),
    ("set_nan", ["certify", "tiny.toml", "--set", "problem.alpha=nan"], "finite number, got nan"),
    ("set_inf", ["certify", "tiny.toml", "--set", "problem.alpha=inf"], "finite number, got inf"),
    (
        "set_negative",
        ["certify", "tiny.toml", "--set", "problem.alpha=-1"],
        "greater than 0, got -1",
    ),
    (
        "set_empty_value",
        ["certify", "tiny.toml", "--set", "problem.alpha="],
        "valid number, got ''",
    ),
    ("set_quoted", ["certify", "tiny.toml", "--set", 'problem.alpha="2"'], "valid number, got '2'"),
    ("set_bool_float", ["certify", "tiny.toml", "--set", "problem.alpha=true"], "got True"),
    ("set_exponent_int", ["certify", "tiny.toml", "--set", "model.width=1e9"], "write 1000000000"),
    (
        "set_bool_int",
        ["certify", "tiny.toml", "--set", "model.width=true"],
        "valid integer, got True",
    ),
    ("set_int_bool", ["certify", "tiny.toml", "--set", "output.figures=1"], "valid boolean, got 1"),
    (
        "set_diagnostics",
        ["certify", "tiny.toml", "--set", 'flows.diagnostics="eigh"'],
        '[flows] diagnostics: must be true, false, "dense" or "lanczos", got \'eigh\'',
    ),
    (
        "set_unclosed_list",
        ["certify", "tiny.toml", "--set", 'model.kind="mlp"', "--set", "model.widths=[8,"],
        "[model] widths: Input should be a valid list, got '[8,'",
    ),
    ("set_empty_label", ["certify", "tiny.toml", "--set", 'name=""'], "name: must not be empty"),
    (
        "set_placeholder",
        ["certify", "tiny.toml", "--set", 'output.dir="out/{nme}"'],
        "unknown placeholder {nme}",
    ),
    ("set_dtype", ["certify", "tiny.toml", "--set", 'problem.dtype="float16"'], "got 'float16'"),
    ("set_seed", ["certify", "tiny.toml", "--set", "data.seed=-1"], "[data] seed: Input should"),
    (
        "set_width_huge",
        ["certify", "tiny.toml", "--set", "model.width=100000000000"],
        "tiny.toml: [model] the problem needs at least",
    ),
    # -- certify --out
    (
        "out_file",
        ["certify", "tiny.toml", "--out", "afile"],
        "--out: results directory 'afile' is a file",
    ),
    (
        "out_parent_file",
        ["certify", "tiny.toml", "--out", "afile/res"],
        "'afile' is a file, not a directory",
    ),
    (
        "out_foreign",
        ["certify", "tiny.toml", "--out", "foreign"],
        "is not an ntkflow results directory",
    ),
    (
        "out_dot",
        ["certify", "tiny.toml", "--out", "."],
        "results directory '.' names no new directory",
    ),
    ("out_empty", ["certify", "tiny.toml", "--out", ""], "names no new directory"),
    ("out_unwritable", ["certify", "tiny.toml", "--out", "{unwritable}"], "cannot be created"),
    # -- run: --out, [output] dir, flags
    ("run_out_parent_file", ["run", "tiny.toml", "--out", "afile/res"], "--out: results directory"),
    ("run_out_unwritable", ["run", "tiny.toml", "--out", "{unwritable}"], "cannot be created"),
    (
        "run_output_dir_file",
        ["run", "tiny.toml", "--set", 'output.dir="afile"'],
        "tiny.toml: [output] dir: results directory 'afile' is a file",
    ),
    (
        "run_output_dir_foreign",
        ["run", "tiny.toml", "--set", 'output.dir="foreign"'],
        "tiny.toml: [output] dir: results directory 'foreign' exists and is not an ntkflow",
    ),
    ("run_progress_value", ["run", "tiny.toml", "--progress=yes"], "does not take a value"),
    ("run_strict_value", ["run", "tiny.toml", "--strict=1"], "does not take a value"),
    ("run_width_huge", ["run", "tiny.toml", "--set", "model.width=100000000000"], "needs at least"),
    # -- sweep
    ("jobs_zero", ["sweep", "sweep.toml", "--jobs", "0"], "--jobs/-j: got '0'"),
    ("jobs_negative", ["sweep", "sweep.toml", "-j", "-1"], "--jobs/-j: got '-1'"),
    ("jobs_text", ["sweep", "sweep.toml", "--jobs", "many"], "--jobs/-j: got 'many'"),
    ("jobs_float", ["sweep", "sweep.toml", "--jobs=1.5"], "--jobs/-j: got '1.5'"),
    ("resume_value", ["sweep", "sweep.toml", "--resume=yes"], "does not take a value"),
    (
        "sweep_output_dir_foreign",
        ["sweep", "sweep.toml", "--set", 'output.dir="foreign"'],
        "sweep.toml: [output] dir: the sweep directory 'foreign' exists and is not an ntkflow",
    ),
    (
        "sweep_out_foreign",
        ["sweep", "sweep.toml", "--out", "foreign"],
        "--out: the sweep directory 'foreign' exists and is not an ntkflow sweep",
    ),
    # -- report
    ("report_missing", ["report", "nowhere"], "results directory 'nowhere' does not exist"),
    ("report_file", ["report", "afile"], "'afile' is a file, expected a results directory"),
    ("report_empty_dir", ["report", "adir"], "'adir' has no summary.json"),
    ("report_truncated_nc", ["report", "res_truncated_nc"], "trajectories.nc' cannot be read"),
    ("report_garbage_nc", ["report", "res_garbage_nc"], "trajectories.nc' cannot be read"),
    ("report_bad_json", ["report", "res_bad_json"], "summary.json' is not valid JSON"),
    ("report_truncated_json", ["report", "res_truncated_json"], "is not valid JSON"),
    ("report_latin1_json", ["report", "res_latin1_json"], "summary.json' is not valid JSON"),
    ("report_list_json", ["report", "res_list_json"], "is not an ntkflow results directory"),
    ("report_incomplete", ["report", "res_incomplete"], "'res_incomplete' is incomplete"),
    ("report_no_certificate", ["report", "res_no_certificate"], "has no certificate"),
    ("report_no_nc", ["report", "res_no_nc"], "lacks trajectories.nc"),
    ("report_summary_dir", ["report", "res_summary_dir"], "summary.json' cannot be read"),
    ("report_out_file", ["report", "res_ok", "--out", "afile"], "--out: results directory 'afile'"),
    ("report_out_parent_file", ["report", "res_ok", "--out", "afile/x"], "'afile' is a file"),
    ("report_out_foreign", ["report", "res_ok", "--out", "foreign"], "is not an ntkflow results"),
    ("report_out_dot", ["report", "res_ok", "--out", "."], "names no new directory"),
    ("report_out_unwritable", ["report", "res_ok", "--out", "{unwritable}"], "cannot be created"),
    ("report_render_fails", ["report", "res_ok", "--out", "new/copy"], "cannot render"),
    ("report_in_place_fails", ["report", "res_ok"], "'res_ok': cannot render from its saved data"),
    ("report_json_value", ["report", "res_ok", "--json=1"], "does not take a value"),
    # -- demo
    ("demo_missing", ["demo", "--experiment", "none.toml"], "'none.toml' does not exist"),
    ("demo_directory", ["demo", "--experiment", "adir"], "'adir' is a directory"),
    ("demo_bad_file", ["demo", "--experiment", str(BAD / "width_true.toml")], "got True"),
    ("demo_out_file", ["demo", "--experiment", "tiny.toml", "--out", "afile"], "'afile' is a file"),
    (
        "demo_out_foreign",
        ["demo", "--experiment", "tiny.toml", "--out", "demo_foreign"],
        "'demo_foreign/below-alpha-star' exists and is not an ntkflow results directory",
    ),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` (hidden ones too) with its size and modification time."""
    out = {}
    for p in root.rglob("*"):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns if p.is_file() else 0)
    return out


def test_corpus_is_large():
    files = list(BAD.glob("*.toml"))
    assert len(CASES) + len(files) >= 60 and len(CASES) >= 60


@pytest.mark.parametrize(("args", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_one_line_exit_2(args, expect, workspace, unwritable, monkeypatch):
    monkeypatch.chdir(workspace)
    args = [a.replace("{unwritable}", unwritable) for a in args]
    before = _snapshot(workspace)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ntkflow: error: ")
    assert expect in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert _snapshot(workspace) == before  # no results, no lock file, no partial directory


def test_bom_toml_is_read(workspace):
    # A UTF-8 byte-order mark (Windows editors write one) is dropped, not a syntax error.
    bom = load_experiment(workspace / "bom.toml")
    assert bom == load_experiment(workspace / "tiny.toml") and bom.name == "tiny"


# -- real processes: a second writer, SIGINT and SIGKILL ----------------------------------


def _start_run(ws: Path) -> subprocess.Popen:
    # Enough work (about 20 s) that the checks below happen while it runs.
    slow = TINY.replace("n = 8\nd = 3", "n = 24\nd = 6").replace("width = 16", "width = 64")
    (ws / "slow.toml").write_text(slow.replace("saves = 4", "saves = 150"))
    (ws / "tiny.toml").write_text(TINY)
    return subprocess.Popen(
        [sys.executable, "-m", "ntkflow", "run", "slow.toml", "--out", "res", "--no-progress"],
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout=120.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _hidden(ws: Path) -> list[str]:
    return sorted(p.name for p in ws.iterdir() if p.name.startswith(".res."))


def _following_run_succeeds(ws: Path, monkeypatch) -> None:
    monkeypatch.chdir(ws)
    result = runner.invoke(app, ["certify", "tiny.toml", "--out", "res"])
    assert result.exit_code == 0, result.output
    assert nf.load_results(ws / "res").summary["complete"] is True
    assert _hidden(ws) == []  # the lock and any partial directory are gone


def test_second_writer_is_refused_and_kill_does_not_block(tmp_path, monkeypatch):
    first = _start_run(tmp_path)
    lock = tmp_path / ".res.lock"
    assert _wait_for(lambda: lock.exists() or first.poll() is not None)
    assert first.poll() is None, "the first run ended before the second started"
    # Paused, it keeps its lock (and cannot finish first) while the second starts on a
    # free CPU.
    first.send_signal(signal.SIGSTOP)
    second = subprocess.run(
        [sys.executable, "-m", "ntkflow", "certify", "tiny.toml", "--out", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert second.returncode == 2, second
    assert second.stdout == "" and second.stderr.count("\n") == 1
    assert (
        f"--out: results directory 'res' is being written by another ntkflow process "
        f"(pid {first.pid})"
    ) in second.stderr
    first.kill()  # SIGKILL: the kernel releases the lock; its file stays behind
    first.communicate(timeout=60)
    with pytest.raises(nf.ResultsError):
        nf.load_results(tmp_path / "res")
    _following_run_succeeds(tmp_path, monkeypatch)


def test_sigint_mid_run_leaves_nothing(tmp_path, monkeypatch):
    proc = _start_run(tmp_path)
    assert _wait_for(lambda: (tmp_path / ".res.lock").exists() or proc.poll() is not None)
    time.sleep(1.0)  # into the computation
    assert proc.poll() is None, "the run finished before the signal"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted; no results were written" in err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "res").exists() and _hidden(tmp_path) == []
    _following_run_succeeds(tmp_path, monkeypatch)


def test_model_sizes_take_numpy_integers_and_refuse_the_rest():
    # `np.arange`/`np.array` widths are what a width study loops over.
    assert nf.MLP((np.int64(4), 3)).widths == (4, 3)
    assert nf.Shallow(np.int32(5)).width == 5
    cnn = nf.CNN(np.array([2, 3]), kernel_size=np.int64(3), strides=(np.int64(1), 2))
    assert cnn.channels == (2, 3) and cnn.kernel_size == (3, 3) and cnn.strides == (1, 2)
    assert all(type(c) is int for c in (*cnn.channels, *cnn.kernel_size))
    # (A float is refused by the type hints here, by the same check without beartype.)
    for bad in ((True,), (0,), (np.int64(-2),), ()):
        with pytest.raises(ValueError, match="widths must be a non-empty sequence"):
            nf.MLP(bad)
    with pytest.raises(ValueError, match="width must be an integer"):
        nf.Shallow(np.int64(0))
    with pytest.raises(ValueError, match="kernel_size must be an integer"):
        nf.CNN((2,), kernel_size=np.int64(0))
