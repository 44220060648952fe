"""Where data come from: the unit sphere with a teacher, scikit-learn's digits, files."""

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..models import AbstractModel, Shallow
from ._dataset import Dataset


def _check_counts(n: int, n_test: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer ≥ 1, got n={n!r}")
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 0:
        raise ValueError(f"n_test must be an integer ≥ 0, got n_test={n_test!r}")


def _split(X: np.ndarray, y: np.ndarray, n_test: int, **kwargs) -> Dataset:
    if n_test:
        return Dataset(X[n_test:], y[n_test:], X[:n_test], y[:n_test], **kwargs)
    return Dataset(X, y, **kwargs)


def sphere(
    n: int,
    d: int,
    *,
    teacher: int | AbstractModel = 4,
    teacher_activation: str = "tanh",
    noise: float = 0.0,
    n_test: int = 0,
    seed: int = 0,
) -> Dataset:
    """Inputs uniform on the unit sphere `S^{d−1}`, targets from a random teacher network.

    The teacher is a `Shallow(width=teacher, activation=teacher_activation)` network at a
    random initialisation (or any model passed as `teacher`), as in the teacher–student
    experiments of Chizat, Oyallon & Bach (NeurIPS 2019, §3).

    **Arguments:**

    - `n`, `d`: number of training points and input dimension.
    - `teacher`: the teacher's width, or a model.
    - `teacher_activation`: the teacher's activation when `teacher` is a width.
    - `noise`: standard deviation of Gaussian label noise.
    - `n_test`: number of extra points held out as the test split.
    - `seed`: seeds the inputs, the teacher and the noise.
    """
    _check_counts(n, n_test)
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be an integer ≥ 1, got d={d!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number ≥ 0, got noise={noise!r}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n_test, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    if isinstance(teacher, AbstractModel):
        model = teacher
    elif isinstance(teacher, int) and not isinstance(teacher, bool) and teacher >= 1:
        model = Shallow(width=teacher, activation=teacher_activation)
    else:
        raise ValueError(f"teacher must be a width ≥ 1 or a model, got teacher={teacher!r}")
    params, state = model.init(jax.random.key(seed), d)
    y = np.asarray(model.apply(params, state, jnp.asarray(X)), dtype=np.float64)
    if noise:
        y = y + noise * rng.standard_normal(y.shape)
    info = {
        "source": "sphere",
        "teacher": teacher if isinstance(teacher, int) else model.describe(),
        "teacher_activation": teacher_activation,
        "noise": noise,
        "seed": seed,
    }
    return _split(X, y, n_test, name=f"sphere(d={d})", info=info)


def digits(
    n: int | None = None,
    classes: Sequence[int] = (0, 1),
    *,
    n_test: int = 0,
    seed: int = 0,
) -> Dataset:
    """scikit-learn's shipped 8×8 handwritten digits (no download).

    Images of the chosen classes are shuffled (by `seed`), standardised per pixel with the
    training split's mean and standard deviation (constant pixels are left at 0), and each
    image is then scaled to unit norm. Two classes give targets `−1` (first) and `+1`
    (second); more give one-hot targets in `{−1, +1}^k`.

    **Arguments:**

    - `n`: number of training points (default: all the remaining images).
    - `classes`: the digits to keep, at least two distinct ones in `0..9`.
    - `n_test`: number of images held out as the test split.
    - `seed`: the shuffle.
    """
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn is slow to import

    classes = tuple(classes)
    if (
        len(classes) < 2
        or len(set(classes)) != len(classes)
        or not all(isinstance(c, int) and 0 <= c <= 9 for c in classes)
    ):
        raise ValueError(
            f"classes must be two or more distinct digits in 0..9, got classes={classes!r}"
        )
    images, labels = load_digits(return_X_y=True)
    images, labels = np.asarray(images, float), np.asarray(labels)
    keep = np.isin(labels, classes)
    images, labels = images[keep], labels[keep]
    available = images.shape[0]
    n_train: int = int(available - n_test) if n is None else n
    _check_counts(n_train, n_test)
    if n_train + n_test > available:
        raise ValueError(
            f"digits has {available} images of classes {classes}, fewer than "
            f"n={n_train} + n_test={n_test}; lower n"
        )
    perm = np.random.default_rng(seed).permutation(available)[: n_train + n_test]
    images, labels = images[perm], labels[perm]
    train = images[n_test:]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    X = (images - mean) / std
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X = X / np.where(norms > 0, norms, 1.0)
    if len(classes) == 2:
        y = np.where(labels == classes[1], 1.0, -1.0)
    else:
        y = np.where(labels[:, None] == np.asarray(classes)[None, :], 1.0, -1.0)
    info = {"source": "digits", "classes": list(classes), "seed": seed}
    return _split(X, y, n_test, name=f"digits{classes}", info=info)


def load(
    path: str | os.PathLike,
    *,
    y_column: int = -1,
    n_test: int = 0,
    seed: int = 0,
) -> Dataset:
    """Load a dataset from an `.npz` (arrays `X`, `y`, optionally `X_test`, `y_test`) or a
    numeric `.csv` file (one row per point, an optional header line; the target in column
    `y_column`, the rest are inputs).

    `n_test > 0` holds out that many random rows (by `seed`) when the file has no test
    split.

    **Raises:** `ValueError` for a missing file, an unknown suffix, missing arrays, or bad
    values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} does not exist; check the path")
    suffix = os.path.splitext(path)[1].lower()
    name = os.path.basename(path)
    info = {"source": "file", "path": path}
    if suffix == ".npz":
        with np.load(path) as f:
            missing = {"X", "y"} - set(f.files)
            if missing:
                raise ValueError(
                    f"{path!r} lacks array(s) {sorted(missing)}; it has {sorted(f.files)}"
                )
            arrays = {k: f[k] for k in ("X", "y", "X_test", "y_test") if k in f.files}
        data = Dataset(
            arrays["X"],
            arrays["y"],
            arrays.get("X_test"),
            arrays.get("y_test"),
            name=name,
            info=info,
        )
    elif suffix == ".csv":
        with open(path) as fh:
            first = fh.readline()
        try:
            [float(v) for v in first.split(",")]
            skip = 0
        except ValueError:
            skip = 1  # a header line
        with open(path) as fh:
            rows = sum(1 for line in fh if line.strip()) - skip
        if rows <= 0:
            raise ValueError(f"data file {path!r} has no data rows; give at least one point")
        try:
            table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
        except ValueError as e:
            raise ValueError(f"{path!r} is not a numeric CSV file: {e}") from None
        if table.shape[1] < 2:
            raise ValueError(
                f"{path!r} has {table.shape[1]} column(s); need inputs and a target column"
            )
        col = y_column % table.shape[1]
        X = np.delete(table, col, axis=1)
        data = Dataset(X, table[:, col], name=name, info=info)
    else:
        raise ValueError(f"data file {path!r} must end in .npz or .csv, got {suffix!r}")
    return data.split(n_test, seed=seed) if n_test else data
