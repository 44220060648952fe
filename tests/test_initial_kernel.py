"""`K0` is formed once and factored once per run (issue 12), and the `InitialKernel` agrees
with an independent eigendecomposition."""

import sys

import jax.numpy as jnp
import numpy as np
import pytest
from jax.core import Tracer  # pyright: ignore[reportPrivateImportUsage]

import ntkflow as nf
from helpers import write_toml
from ntkflow.config import load_experiment
from ntkflow.experiment import run_experiment

TINY = {
    "name": "tiny",
    "data": {"source": "sphere", "n": 8, "d": 3},
    "model": {"width": 16},
    "problem": {"alpha": 2.0, "centering": "antisymmetric"},
    "flows": {"saves": 6, "diagnostics": True, "gd_step": 0.05},
    "output": {"figures": False},
}


def test_one_run_forms_and_factors_K0_once(tmp_path, monkeypatch):
    formed: list[bool] = []
    factored: list[np.ndarray] = []
    real_ntk = nf.empirical_ntk

    def counting_ntk(problem, w=None, **kwargs):
        K = real_ntk(problem, w, **kwargs)
        formed.append(w is None or bool(jnp.all(w == problem.w0)))
        return K

    # Every ntkflow module that imported `empirical_ntk` by name counts.
    for name, module in list(sys.modules.items()):
        if name.startswith("ntkflow") and getattr(module, "empirical_ntk", None) is real_ntk:
            monkeypatch.setattr(module, "empirical_ntk", counting_ntk)

    def counting(fn):
        def wrapped(a, *args, **kwargs):
            if not isinstance(a, Tracer):
                factored.append(np.array(a, dtype=np.float64))
            return fn(a, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(np.linalg, "eigh", counting(np.linalg.eigh))
    monkeypatch.setattr(np.linalg, "eigvalsh", counting(np.linalg.eigvalsh))
    monkeypatch.setattr(jnp.linalg, "eigh", counting(jnp.linalg.eigh))

    experiment = load_experiment(write_toml(tmp_path / "tiny.toml", TINY))
    result = run_experiment(experiment)
    assert result.solution is not None and result.solution.kernel_drift is not None
    assert result.certificate.kernel is not None
    K0 = np.asarray(result.certificate.kernel.K, dtype=np.float64)
    assert formed.count(True) == 1, formed  # K0 formed once ...
    # ... and factored once.
    # (to 1e-12: the first save's kernel, at t = t_fast/100, is within 1e-8 of K0)
    same = [a for a in factored if a.shape == K0.shape and np.allclose(a, K0, rtol=1e-12, atol=0)]
    assert len(same) == 1
    # The diagnostics did form kernels away from w0 (the counters see them).
    assert formed.count(False) >= 1


def test_initial_kernel_agrees_with_an_independent_eigh():
    problem = nf.Problem(nf.Shallow(32), nf.datasets.sphere(12, 4, seed=3), alpha=3.0)
    k0 = nf.initial_kernel(problem)
    K = np.asarray(nf.empirical_ntk(problem), dtype=np.float64)
    lam = np.linalg.eigvalsh(K)
    np.testing.assert_allclose(k0.eigenvalues, lam, rtol=1e-10, atol=1e-12 * lam[-1])
    # Eigenvectors up to sign: V Λ Vᵀ reproduces K.
    V0 = k0.eigenvectors
    np.testing.assert_allclose(V0 @ np.diag(k0.eigenvalues) @ V0.T, K, atol=1e-12 * lam[-1])
    assert k0.spectrum.sigma_min == pytest.approx(np.sqrt(lam[0]), rel=1e-10)
    assert k0.norm == pytest.approx(lam[-1], rel=1e-12)
    # Handed on, it is used as is: the certificate and the flows agree with it.
    cert = nf.certify(problem, kernel=k0, estimate_beta=False)
    assert cert.kernel is k0 and cert.sigma_min == k0.sigma_min_resolved
    with pytest.raises(ValueError, match="kernel is 12×12, but the problem has n=8"):
        nf.certify(nf.Problem(nf.Shallow(32), nf.datasets.sphere(8, 4)), kernel=k0)
