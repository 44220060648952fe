"""Progress where stderr is not a terminal (issue 28): plain lines at least every 10% of
the work or every 30 s — the gradient flow's with the time reached and the steps, a
sweep's with the points failed and remaining, `certify`'s long steps — instead of a rich
bar that shows nothing in a log file."""

import io
import re

import pytest

import ntkflow as nf
from ntkflow import _progress
from ntkflow._progress import LineProgress


def test_lines_every_tenth_or_every_30_seconds(monkeypatch):
    out = io.StringIO()
    bar = LineProgress(stream=out)
    task = bar.add_task("work", total=100.0, steps=0)
    for i in range(1, 101):
        bar.update(task, completed=float(i), steps=i)
    bar.stop()
    lines = out.getvalue().splitlines()
    # the start, then every 10%, and nothing twice at the end
    assert [re.split(r"\s+", line)[1] for line in lines] == [f"{p}%" for p in range(0, 101, 10)]
    assert lines[5].startswith("work   50%  steps=50  ")
    # A slow task: a line whenever 30 s have passed, however little was done.
    now = [0.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = LineProgress(stream=out, counts=True)
    task = bar.add_task("sweep", total=1000, failed=0)
    bar.update(task, advance=1, failed=1)  # (no line: 1 s, 0.1% of the work)
    for _ in range(3):
        now[0] += 31.0
        bar.update(task, advance=1, failed=1)
    assert out.getvalue().splitlines()[1:] == [
        "sweep  2/1000  failed=1  31s",
        "sweep  3/1000  failed=1  1m02s",
        "sweep  4/1000  failed=1  1m33s",
    ]


@pytest.mark.slow  # a whole run's accuracy policy and a sweep (CI: make test-slow)
def test_a_run_with_progress_writes_lines_without_a_terminal(tmp_path, capsys):
    data = nf.datasets.sphere(16, 4, seed=0)
    problem = nf.Problem(nf.MLP((32,), "tanh"), data, alpha=30.0, centering="antisymmetric")
    nf.run(problem, tmp_path / "r", progress=True, saveat=8, figures=False, report=False)
    err = capsys.readouterr().err
    assert "certify: K0 (16×16) and its spectrum  done" in err
    assert "certify: β (bound and estimates)  done" in err
    flow = [line for line in err.splitlines() if line.startswith("gradient flow")]
    assert flow, err
    # each solve of the accuracy policy starts at 0% and ends at 100%, with t and steps
    assert any(re.match(r"gradient flow \(τ = 0\.1\)\s+100%  t=\S+  steps=\d+  ", s) for s in flow)
    assert any(re.match(r"gradient flow \(τ = 1\)\s+0%", s) for s in flow)
    # a sweep says how many points failed and how many remain
    nf.sweep(
        lambda alpha: nf.Problem(nf.Shallow(8, "tanh"), nf.datasets.sphere(6, 3), alpha=alpha),
        {"alpha": [1.0, 2.0]},
        out=tmp_path / "s",
        t1=1.0,
        saveat=4,
        progress=True,
    )
    err = capsys.readouterr().err
    assert re.search(r"^sweep  0/2  failed=0  remaining=2  ", err, re.M), err
    assert re.search(r"^sweep  2/2  failed=0  remaining=0  ", err, re.M), err
