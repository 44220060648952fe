import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow as nf


def test_digits_standardised_unit_norm_pm1():
    data = nf.datasets.digits(100, n_test=50, seed=1)
    X, y = np.asarray(data.X), np.asarray(data.y)
    assert data.X_test is not None
    assert X.shape == (100, 64) and data.X_test.shape == (50, 64)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(data.X_test), axis=1), 1.0, rtol=1e-12)
    assert set(np.unique(y)) == {-1.0, 1.0}
    # Train and test are disjoint images, and the same seed gives the same split.
    rows = {tuple(r) for r in np.round(X, 12)}
    assert not rows & {tuple(r) for r in np.round(np.asarray(data.X_test), 12)}
    again = nf.datasets.digits(100, n_test=50, seed=1)
    np.testing.assert_array_equal(np.asarray(again.X), X)


def test_digits_multiclass_one_hot():
    data = nf.datasets.digits(30, classes=(3, 5, 7))
    y = np.asarray(data.y)
    assert y.shape == (30, 3) and data.k == 3
    np.testing.assert_array_equal((y == 1).sum(axis=1), 1)


def test_digits_too_many_points():
    with pytest.raises(ValueError, match="digits has 360 images of classes \\(0, 1\\)"):
        nf.datasets.digits(400)
    with pytest.raises(ValueError, match="classes must be two or more distinct digits"):
        nf.datasets.digits(10, classes=(1, 1))


def test_sphere_teacher():
    data = nf.datasets.sphere(40, 5, teacher=3, n_test=10, seed=2)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(data.X), axis=1), 1.0, rtol=1e-12)
    teacher = nf.Shallow(3, "tanh")
    import jax

    params, state = teacher.init(jax.random.key(2), 5)
    X_all = np.vstack([np.asarray(data.X_test), np.asarray(data.X)])
    y_all = np.concatenate([np.asarray(data.y_test), np.asarray(data.y)])
    np.testing.assert_allclose(teacher.apply(params, state, jnp.asarray(X_all)), y_all, rtol=1e-12)
    noisy = nf.datasets.sphere(40, 5, teacher=3, noise=0.1, seed=2)
    residual = np.asarray(noisy.y) - teacher.apply(params, state, noisy.X)
    assert 0.05 < np.std(residual) < 0.2


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (
            [[0.0, np.nan]],
            [1.0],
            r"X contains 1 non-finite value\(s\) \(NaN or inf\) in row\(s\) 0",
        ),
        ([[0.0], [1.0]], [1.0, np.inf], r"y contains 1 non-finite value"),
        ([[0.0], [1.0]], [1.0], "X has 2 rows but y has 1; they must match"),
        (np.zeros((0, 3)), np.zeros(0), r"X is empty \(shape \(0, 3\)\)"),
        (
            [[[1.0]]],
            [1.0],
            r"X must be 2-D \(n, d\) or images \(n, H, W, C\), got shape \(1, 1, 1\)",
        ),
        ([["a"]], [1.0], "X must be a numeric array"),
    ],
)
def test_bad_arrays(X, y, match):
    with pytest.raises(ValueError, match=match):
        nf.datasets.from_arrays(X, y)


def test_split_and_files(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    data = nf.datasets.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(np.asarray(data.X), X)
    split = nf.datasets.load(tmp_path / "d.npz", n_test=5)
    assert split.n == 15 and split.X_test is not None and split.X_test.shape == (5, 3)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c,y")
    csv = nf.datasets.load(tmp_path / "d.csv")
    np.testing.assert_allclose(np.asarray(csv.X), X, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(csv.y), y, rtol=1e-15)
    with pytest.raises(ValueError, match="does not exist"):
        nf.datasets.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", X=X)
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['y'\]"):
        nf.datasets.load(tmp_path / "bad.npz")
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"must end in \.npz or \.csv"):
        nf.datasets.load(tmp_path / "d.txt")
    with pytest.raises(ValueError, match="n_test must be between 1 and n-1=19"):
        data.split(20)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones((3, 2)) * (1 + 1j), r"X has complex values \(dtype=complex128\); .* X\.real"),
        (np.ones(3), r"X must be 2-D \(n, d\), got shape \(3,\); .* reshape it to \(3, 1\)"),
        (np.array([["1.5", "2"]] * 3), r"X must be a numeric array, got dtype=<U3"),
        ([[1.0, 2.0], [3.0]], "X must be a numeric array, got list"),
        ([[1.0, None]] * 3, "X must be a numeric array, got dtype=object with an entry None"),
    ],
)
def test_inputs_that_a_cast_would_change_are_refused(X, match):
    with pytest.raises(ValueError, match=match):
        nf.datasets.from_arrays(X, np.ones(len(X)))


def test_csv_y_column_encodings_and_rows(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x1,x2,y\n1,2,3\n4,5,6\n7,8,9\n")
    assert np.asarray(nf.datasets.load(path, y_column=0).y).tolist() == [1, 4, 7]
    assert np.asarray(nf.datasets.load(path, y_column=-3).y).tolist() == [1, 4, 7]
    for bad in (3, -4, 100):
        with pytest.raises(ValueError, match=rf"y_column={bad} is out of range .* 3 columns"):
            nf.datasets.load(path, y_column=bad)
    # A UTF-8 byte-order mark is dropped: the first data row is not taken for a header.
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf1,2,3\n4,5,6\n")
    assert nf.datasets.load(bom).n == 2
    utf16 = tmp_path / "u.csv"
    utf16.write_text("1,2,3\n", encoding="utf-16")
    with pytest.raises(ValueError, match="is UTF-16 text; CSV files are UTF-8: save it as UTF-8"):
        nf.datasets.load(utf16)
    # A mistyped first row is an error, not a header.
    typo = tmp_path / "typo.csv"
    typo.write_text("1,2,x\n4,5,6\n")
    with pytest.raises(ValueError, match=r"line 1: 'x' is not a number"):
        nf.datasets.load(typo)
    with pytest.raises(ValueError, match=r"is a directory, expected a file \(\.npz or \.csv\)"):
        nf.datasets.load(tmp_path)
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.ones(3))
    with pytest.raises(ValueError, match="y_column=1 applies to CSV files only"):
        nf.datasets.load(tmp_path / "d.npz", y_column=1)


def test_seeds_are_checked():
    with pytest.raises(ValueError, match="seed must be an integer ≥ 0, got seed=-1"):
        nf.datasets.sphere(4, 2, seed=-1)
    with pytest.raises(ValueError, match=r"the data need about .* TB of memory"):
        nf.datasets.sphere(10**12, 3)


def test_digits_as_images_same_pixels_and_vector_models_refuse_them():
    flat = nf.datasets.digits(10, classes=(3, 5), seed=2)
    img = nf.datasets.digits(10, classes=(3, 5), seed=2, images=True)
    assert img.X.shape == (10, 8, 8, 1) and img.point_shape == (8, 8, 1) and img.d == 64
    np.testing.assert_array_equal(np.asarray(img.X).reshape(10, 64), np.asarray(flat.X))
    np.testing.assert_array_equal(np.asarray(img.y), np.asarray(flat.y))
    with pytest.raises(ValueError, match=r"MLP takes inputs of rank 1 .* shape \(8, 8, 1\)"):
        nf.Problem(nf.MLP((8,)), img)
    bad = r"X_test has \(8, 8, 2\) per-point shape but X has \(8, 8, 1\)"
    with pytest.raises(ValueError, match=bad):
        nf.datasets.from_arrays(
            np.zeros((2, 8, 8, 1)), np.zeros(2), X_test=np.zeros((1, 8, 8, 2)), y_test=np.zeros(1)
        )
