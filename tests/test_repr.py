"""Every public result has a short repr (issue 28): under 2,000 characters whatever the
problem's size, showing the verdict, α*, the checks and shapes rather than values, and an
HTML table for notebooks."""

import re

import numpy as np
import pytest

import ntkflow as nf


def _long_number_runs(text: str) -> int:
    """The longest run of numbers separated by commas or spaces: an array printed."""
    runs = re.findall(r"(?:-?\d+\.\d+(?:e[+-]?\d+)?[,\s]+){6,}", text)
    return max((len(r) for r in runs), default=0)


def _objects(tmp_path):
    data = nf.datasets.sphere(96, 4, seed=0)
    problem = nf.Problem(nf.MLP((32,), "tanh"), data, alpha=10.0, centering="antisymmetric")
    out = nf.run(problem, tmp_path / "run", progress=False, save_params=True)
    sweep = nf.sweep(
        lambda alpha: nf.Problem(nf.Shallow(16, "tanh"), nf.datasets.sphere(8, 3), alpha=alpha),
        {"alpha": [1.0, 4.0, 16.0]},  # (three values: fits, which the repr lists)
        out=tmp_path / "sweep",
        t1=1.0,
        saveat=4,
    )
    cert, sol, ver = out.certificate, out.solution, out.verification
    assert sol is not None and ver is not None and cert.kernel is not None
    return {
        "RunOutput": out,
        "Certificate": cert,
        "FlowSolution": sol,
        "Verification": ver,
        "Check": ver.checks[0],
        "Results": nf.load_results(tmp_path / "run"),
        "SweepResult": sweep,
        "InitialKernel": cert.kernel,
        "Spectrum": cert.spectrum,
        "InfiniteKernel": nf.infinite_kernel(nf.MLP((32,), "tanh"), data),
        "BetaEstimate": nf.certified_beta(problem, cert.sigma_min),
        "TangentFlow": nf.TangentFlow(problem, cert.kernel),
    }


@pytest.mark.slow
def test_public_results_have_short_reprs_and_html(tmp_path):
    objects = _objects(tmp_path)
    for name, obj in objects.items():
        text = repr(obj)
        assert text.startswith(f"{name}("), (name, text[:80])
        assert len(text) < 2000, (name, len(text))
        assert _long_number_runs(text) == 0, (name, text)
        table = obj._repr_html_()
        assert table.startswith("<table>") and len(table) < 6000, name
    run = repr(objects["RunOutput"])
    cert = objects["Certificate"]
    # What a user looks at first: the verdict, α*, the checks, shapes.
    assert "hypotheses_hold=False" in run and f"alpha_star={cert.alpha_star:.4g}" in run
    assert re.search(r"checks=\d+ held, \d+ failed, \d+ inconclusive", run)
    ver = repr(objects["Verification"])
    assert all(f"{c.name}: " in ver for c in objects["Verification"].checks)
    sol = repr(objects["FlowSolution"])
    assert f"ts=f64[{len(objects['FlowSolution'].ts)}]" in sol and "SUCCESS" in sol
    assert "K=f64[96,96]" in repr(objects["InitialKernel"])
    assert "ntk=f64[96,96]" in repr(objects["InfiniteKernel"])
    assert np.isfinite(objects["Certificate"].alpha_star)
    assert "sup_dist_w vs alpha: slope" in repr(objects["SweepResult"])
