"""Sharding the data axis over devices: with two forced host devices (a fresh process,
`tests/sharded_checks.py`), the sharded kernel equals the single-device one to 1e-12 and
is spread over both devices, the sharded flows equal the single-device flows to 1e-9
relative, and a device count that does not divide `n` is one clear error for the flows
(the kernel's ring pads)."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

import ntkflow as nf
from helpers import cpu_devices_env
from ntkflow.ntk._sharding import data_mesh

HERE = Path(__file__).resolve().parent


# Two devices need a fresh process (`sharded_checks.py`), which compiles everything again
# for two devices: the default suite runs the same ring on one device
# (`test_one_device_sharding_is_the_plain_computation`), CI's slow suite on two.
@pytest.fixture(scope="module")
def checks():
    env = cpu_devices_env(2)
    proc = subprocess.run(
        [sys.executable, str(HERE / "sharded_checks.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mlp", "mlp_jacobian", "uneven", "vector_outputs", "cnn"])
def test_sharded_kernel_equals_one_device_and_is_split(checks, case):
    assert checks["devices"] == 2
    got = checks[case]
    assert got["rel"] <= 1e-12, got
    # Row blocks of K, one per device.
    assert got["devices"] == [0, 1]
    rows, cols = got["shape"]
    if rows % 2 == 0:
        assert got["shards"] == [[0, [rows // 2, cols]], [1, [rows // 2, cols]]]


@pytest.mark.slow
def test_sharded_certificate_and_flows_equal_one_device(checks):
    for name, (two, one) in checks["certificate"].items():
        assert two == pytest.approx(one, rel=1e-9), name
    for name, err in checks["flows"].items():
        assert err <= 1e-9, (name, err)
    assert checks["flows_status"][0] == checks["flows_status"][1] == "SUCCESS"
    # The points are split, and the gradient sums over them across the devices.
    assert checks["data_shards"] == [[0, [6, 5]], [1, [6, 5]]]
    assert checks["gradient_all_reduce"] is True and checks["gradient"] <= 1e-12


@pytest.mark.slow
def test_flows_need_a_device_count_that_divides_n(checks):
    message = checks["uneven_flows"]
    assert "n=13 training points do not split evenly over 2 devices" in message, message
    assert "divides n (1)" in message


def test_bad_devices_are_one_line():
    with pytest.raises(ValueError, match=r"devices=3 but this process sees 1 device"):
        data_mesh(3)
    with pytest.raises(ValueError, match="devices must be a number of devices"):
        data_mesh("gpu")
    with pytest.raises(ValueError, match="devices lists a device twice"):
        data_mesh([jax.devices()[0]] * 2)
    with pytest.raises(ValueError, match="one axis 'data'"):
        data_mesh(Mesh(np.array(jax.devices()), ("batch",)))
    problem = nf.Problem(nf.MLP((8,), "tanh"), nf.datasets.sphere(4, 3))
    with pytest.raises(ValueError, match="has no sharded form"):
        nf.empirical_ntk(problem, method="ntk_vp", devices=1)
    with pytest.raises(ValueError, match="give method by name"):
        nf.empirical_ntk(problem, chunk=2, devices=1)


def test_one_device_sharding_is_the_plain_computation():
    # devices=1 runs the same ring and sharded problem on this process's one device.
    problem = nf.Problem(nf.MLP((16, 16), "tanh"), nf.datasets.sphere(7, 3, seed=2))
    K = nf.empirical_ntk(problem, devices=1)
    np.testing.assert_allclose(K, nf.empirical_ntk(problem), rtol=1e-12, atol=1e-14)
    flows = {"t1": 1.0, "saveat": 4, "error_estimate": False, "diagnostics": False}
    a = nf.solve_flows(problem, devices=1, **flows)
    b = nf.solve_flows(problem, **flows)
    assert a.loss_w is not None and b.loss_w is not None
    np.testing.assert_allclose(a.loss_w, b.loss_w, rtol=1e-10)
