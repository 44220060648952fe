"""Kernels on disk (`kernel_to_disk`, `DiskArray`) and the predictors on them: each
store equals the kernel computed in memory; a run killed part way resumes without
recomputing what it wrote; `gp_inference` and `gradient_descent_mse` on a `DiskArray`
equal their in-memory answers (themselves equal to neural-tangents', `test_predict`)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import ntkflow as nf
from helpers import cpu_devices_env
from ntkflow.disk._store import RECORD

MODEL = nf.MLP((32, 32), "relu", bias=True)


def _points(n, seed=0, d=5):
    return np.random.default_rng(seed).standard_normal((n, d))


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("block", [7, 16, 40])
def test_an_infinite_width_kernel_on_disk_equals_it_in_memory(tmp_path, block):
    X, Z = _points(37), _points(11, seed=1)
    ref = nf.infinite_kernel(MODEL, X)
    k = nf.kernel_to_disk(
        MODEL, X, path=tmp_path / "a", get=("nngp", "ntk"), block=block, progress=False
    )
    assert k.complete and k.symmetric and k.shape == (37, 37)
    # of a set with itself only the blocks on and above the diagonal are computed
    b = -(-37 // block)
    assert k.blocks_total == b * (b + 1) // 2
    for name in ("nngp", "ntk"):  # (equal to rounding: XLA's loops differ with the shape)
        assert _rel(k[name], getattr(ref, name)) < 1e-14
    cross = nf.kernel_to_disk(MODEL, Z, X, path=tmp_path / "b", block=block, progress=False)
    assert not cross.symmetric and cross.names == ("ntk",) and cross.nngp is None
    assert _rel(cross.ntk, nf.infinite_kernel(MODEL, Z, X).ntk) < 1e-14
    again = nf.open_kernel(tmp_path / "b")
    assert again == cross


def test_a_cnn_limit_and_an_empirical_kernel_with_outputs_on_disk(tmp_path):
    images = np.random.default_rng(2).standard_normal((9, 5, 5, 1))
    cnn = nf.CNN((8,), 3, "erf", readout="pool", strides=2)
    k = nf.kernel_to_disk(cnn, images, path=tmp_path / "cnn", block=4, progress=False)
    assert _rel(k.ntk, nf.infinite_kernel(cnn, images).ntk) < 1e-14

    def f(params, x):
        return jax.numpy.tanh(x @ params["W"]) @ params["V"]  # two outputs

    params = {"W": _points(5, seed=3, d=6), "V": _points(6, seed=4, d=2)}
    X = _points(10, seed=5)
    fn = nf.empirical_ntk_fn(f, trace_axes=())
    k = nf.kernel_to_disk(fn, X, path=tmp_path / "emp", params=params, block=3, progress=False)
    assert k.shape == (10, 10, 2, 2)  # the outputs' axes, transposed in mirrored blocks
    assert _rel(k.ntk, fn(X, None, params)) < 1e-13


def test_a_kernel_fn_and_the_devices_and_executors_for_the_blocks(tmp_path):
    X = _points(20)
    calls = []

    def kernel_fn(x1, x2, get):
        calls.append((len(x1), len(x2)))
        return nf.infinite_kernel(MODEL, x1, x2).nngp

    k = nf.kernel_to_disk(kernel_fn, X, path=tmp_path / "fn", get="nngp", block=8, progress=False)
    assert len(calls) == 6  # 3 × 3 blocks, 6 on or above the diagonal
    ref = np.asarray(k.nngp)
    assert _rel(ref, nf.infinite_kernel(MODEL, X).nngp) < 1e-14
    on_one = nf.kernel_to_disk(
        MODEL, X, path=tmp_path / "dev", get="nngp", block=8, devices=1, progress=False
    )
    np.testing.assert_array_equal(np.asarray(on_one.nngp), ref)
    local = nf.kernel_to_disk(
        MODEL, X, path=tmp_path / "local", get="nngp", block=8, executor="local", progress=False
    )
    np.testing.assert_array_equal(np.asarray(local.nngp), ref)


KILLED = """
import os, sys
import numpy as np
import ntkflow as nf
from ntkflow.disk import _write

model = nf.MLP((32, 32), "relu", bias=True)
X = np.random.default_rng(0).standard_normal((50, 5))
kill_at = int(os.environ.get("KILL_AT", "0"))
count = 0
compute = _write.BlockJob.compute

def counted(self, i, j):
    global count
    count += 1
    if count == kill_at:
        os.kill(os.getpid(), 9)  # as a kill -9 would, mid-run
    return compute(self, i, j)

_write.BlockJob.compute = counted
nf.kernel_to_disk(model, X, path=sys.argv[1], get=("nngp", "ntk"), block=10, progress=False)
print(count)
"""


def test_a_killed_run_resumes_from_the_blocks_it_recorded(tmp_path):
    store = tmp_path / "store"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILLED))
    env = dict(os.environ, KILL_AT="9")
    killed = subprocess.run([sys.executable, str(script), str(store)], env=env)
    assert killed.returncode == -9
    record = json.loads((store / RECORD).read_text())
    assert len(record["done"]) == 8 and record["total"] == 15  # 5 × 6 / 2 blocks
    assert not nf.open_kernel(store).complete
    resumed = subprocess.run(
        [sys.executable, str(script), str(store)], capture_output=True, text=True, check=True
    )
    assert int(resumed.stdout) == 7  # only the blocks not recorded
    k = nf.open_kernel(store)
    assert k.complete
    X = np.random.default_rng(0).standard_normal((50, 5))
    whole = nf.kernel_to_disk(
        MODEL, X, path=tmp_path / "whole", get=("nngp", "ntk"), block=10, progress=False
    )
    np.testing.assert_array_equal(np.asarray(k.ntk), np.asarray(whole.ntk))
    np.testing.assert_array_equal(np.asarray(k.nngp), np.asarray(whole.nngp))


def test_a_store_holding_another_kernel_is_refused(tmp_path):
    X = _points(12)
    nf.kernel_to_disk(MODEL, X, path=tmp_path / "k", block=5, progress=False)
    with pytest.raises(nf.KernelStoreError, match=r"path must be a new folder, or overwrite=True"):
        nf.kernel_to_disk(MODEL, X[:11], path=tmp_path / "k", block=5, progress=False)
    with pytest.raises(nf.KernelStoreError, match=r"it holds another kernel"):  # its dtype
        nf.kernel_to_disk(MODEL, X, path=tmp_path / "k", block=5, dtype="f4", progress=False)
    k = nf.kernel_to_disk(
        MODEL, X[:11], path=tmp_path / "k", block=5, progress=False, overwrite=True
    )
    assert k.shape == (11, 11)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(nf.KernelStoreError, match=r"this one holds other files"):
        nf.kernel_to_disk(MODEL, X, path=tmp_path / "other", progress=False)
    with pytest.raises(nf.KernelStoreError, match=r"block must be an integer ≥ 1, got block=0"):
        nf.kernel_to_disk(MODEL, X, path=tmp_path / "z", block=0)
    with pytest.raises(nf.KernelStoreError, match=r"get must be 'nngp', 'ntk' or a tuple"):
        nf.kernel_to_disk(MODEL, X, path=tmp_path / "z", get="nngp_ntk")
    with pytest.raises(nf.KernelStoreError, match=r"path must be a folder kernel_to_disk wrote"):
        nf.open_kernel(tmp_path / "other")
    assert not (tmp_path / "z").exists()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("disk")
    X, Z = _points(150, seed=6), _points(20, seed=7)
    k = nf.kernel_to_disk(MODEL, X, path=tmp / "dd", get=("nngp", "ntk"), block=64, progress=False)
    kt = nf.kernel_to_disk(
        MODEL, Z, X, path=tmp / "td", get=("nngp", "ntk"), block=64, progress=False
    )
    kz = nf.kernel_to_disk(MODEL, Z, path=tmp / "tt", get=("nngp", "ntk"), block=64, progress=False)

    def memory(s):
        return nf.predict.Kernel(nngp=np.asarray(s.nngp), ntk=np.asarray(s.ntk))

    return (k, kt, kz), (memory(k), memory(kt), memory(kz))


def test_disk_array_products_and_diagonal(stores):
    (k, _, _), (mem, _, _) = stores
    v = np.random.default_rng(8).standard_normal((150, 3))
    assert _rel(k.ntk @ v, mem.ntk @ v) < 1e-14
    np.testing.assert_array_equal(k.ntk.diagonal(), np.diag(mem.ntk))
    rows = [r for r, _ in k.ntk.rows(block=100)]
    assert rows == [slice(0, 100), slice(100, 150)]


SOLVER = nf.DiskSolver(rtol=1e-11, progress=False)


@pytest.mark.parametrize("diag_reg", [0.0, 1e-2])
def test_gp_inference_on_disk_equals_it_in_memory(stores, diag_reg):
    (k, kt, kz), (mem, memt, memz) = stores
    y = np.random.default_rng(9).standard_normal((150, 2))
    on_disk = nf.predict.gp_inference(k, y, diag_reg=diag_reg, solver=SOLVER)
    in_memory = nf.predict.gp_inference(mem, y, diag_reg=diag_reg)
    for get in ("nngp", "ntk", "ntkgp"):
        a = on_disk(get, kt, kz)
        b = in_memory(get, memt, memz)
        assert _rel(a.mean, b.mean) < 1e-9, get
        assert _rel(a.covariance, b.covariance) < 1e-9, get


def test_gradient_descent_mse_on_disk_equals_it_in_memory(stores):
    (k, kt, _), (mem, memt, _) = stores
    rng = np.random.default_rng(10)
    y, fx0, ft0 = (
        rng.standard_normal((150, 1)),
        rng.standard_normal((150, 1)),
        rng.standard_normal((20, 1)),
    )
    for t in (None, 0.3, [[1.0], [30.0]]):
        a = nf.predict.gradient_descent_mse(k.ntk, y, diag_reg=1e-3, solver=SOLVER)(
            t, fx0, ft0, kt.ntk
        )
        b = nf.predict.gradient_descent_mse(mem.ntk, y, diag_reg=1e-3)(t, fx0, ft0, memt.ntk)
        for got, want in zip(a, b, strict=True):
            assert np.shape(got) == np.shape(want)
            assert _rel(got, want) < 1e-9, t


def test_a_solve_that_does_not_converge_is_refused(stores):
    (k, kt, _), _ = stores
    y = np.random.default_rng(11).standard_normal((150, 1))
    tight = nf.DiskSolver(rank=2, rtol=1e-14, maxiter=3, progress=False)
    with pytest.raises(nf.DiskSolveError, match=r"not rtol=1e-14, in 3 passes; add diag_reg"):
        nf.predict.gp_inference(k, y, solver=tight)("ntk", kt)
    with pytest.raises(nf.DiskSolveError, match=r"did not settle to rtol=1e-14 in 3 passes"):
        nf.predict.gradient_descent_mse(k.ntk, y, solver=tight)(1.0, 0.0)
    with pytest.raises(ValueError, match=r"rank must be an integer ≥ 1, got rank=0"):
        nf.DiskSolver(rank=0)


DEVICES = """
import numpy as np, jax, jax.numpy as jnp
import ntkflow as nf

model = nf.MLP((16,), "erf")
seen = []

def kernel_fn(x1, x2, get):
    seen.append(str(next(iter(jnp.zeros(()).devices()))))
    return nf.infinite_kernel(model, x1, x2).ntk

X = np.random.default_rng(0).standard_normal((24, 3))
k = nf.kernel_to_disk(kernel_fn, X, path=__import__("sys").argv[1], block=8, devices=2,
                      progress=False)
ref = np.asarray(nf.infinite_kernel(model, X).ntk)
assert np.max(np.abs(np.asarray(k.ntk) - ref)) <= 1e-14 * np.max(np.abs(ref))
print(sorted(set(seen)), len(seen))
"""


def test_blocks_are_dealt_to_the_devices(tmp_path):
    env = cpu_devices_env(2)
    out = subprocess.run(
        [sys.executable, "-c", DEVICES, str(tmp_path / "k")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # the first block on the default device, the other five dealt to both
    assert out.strip() == "['cpu:0', 'cpu:1'] 6", out


HOLDER = """
import sys, time
from ntkflow._results import directory_lock
with directory_lock(sys.argv[1], what="kernel store"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_store_being_written_by_another_process_is_refused(tmp_path):
    store = tmp_path / "k"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(nf.ResultsError, match=r"kernel store .* is being written by another"):
            nf.kernel_to_disk(MODEL, _points(6), path=store, progress=False)
        assert not store.exists()
    finally:
        holder.kill()
        holder.communicate()
    k = nf.kernel_to_disk(MODEL, _points(6), path=store, block=4, progress=False)
    assert k.complete and not list(tmp_path.glob(".k.partial-*"))
