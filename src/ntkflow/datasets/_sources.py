"""Where data come from: the unit sphere with a teacher, scikit-learn's digits, files."""

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._files import read_utf8
from .._memory import TooLarge, available_bytes, human_bytes
from ..models import AbstractModel, Shallow
from ._dataset import Dataset


def _check_counts(n: int, n_test: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer ≥ 1, got n={n!r}")
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 0:
        raise ValueError(f"n_test must be an integer ≥ 0, got n_test={n_test!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0, got seed={seed!r}")


def _check_fits(n: int, d: int, width: int) -> None:
    """Refuse a dataset whose inputs and teacher (parameters and hidden activations) would
    not fit in memory, before allocating them."""
    need = 8 * (n * d + width * (d + 1) + n * width)
    limit = available_bytes()
    if limit is not None and need > limit:
        raise TooLarge(
            f"the data need about {human_bytes(need)} of memory (n={n} points in d={d} "
            f"dimensions, a teacher of width {width}), more than the {human_bytes(limit)} "
            "here; lower n, d or the teacher's width",
            "data",
        )


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
    if (
        isinstance(noise, bool)
        or not isinstance(noise, int | float | np.floating)
        or not np.isfinite(noise)
        or noise < 0
    ):
        raise ValueError(f"noise must be a finite number ≥ 0, got noise={noise!r}")
    _check_seed(seed)
    if isinstance(teacher, int) and not isinstance(teacher, bool):
        _check_fits(n + n_test, d, teacher)
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
    images: bool = False,
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
    - `images`: give each point as an `8 × 8 × 1` image (`X` of shape `(n, 8, 8, 1)`, for
      convolutional nets) instead of a vector of 64 pixels; same values.
    """
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn is slow to import

    _check_seed(seed)
    classes = tuple(classes)
    if (
        len(classes) < 2
        or len(set(classes)) != len(classes)
        or not all(isinstance(c, int) and 0 <= c <= 9 for c in classes)
    ):
        raise ValueError(
            f"classes must be two or more distinct digits in 0..9, got classes={classes!r}"
        )
    pixels, labels = load_digits(return_X_y=True)
    pixels, labels = np.asarray(pixels, float), np.asarray(labels)
    keep = np.isin(labels, classes)
    pixels, labels = pixels[keep], labels[keep]
    available = pixels.shape[0]
    n_train: int = int(available - n_test) if n is None else n
    _check_counts(n_train, n_test)
    if n_train + n_test > available:
        raise ValueError(
            f"digits has {available} images of classes {classes}, fewer than "
            f"n={n_train} + n_test={n_test}; lower n"
        )
    perm = np.random.default_rng(seed).permutation(available)[: n_train + n_test]
    pixels, labels = pixels[perm], labels[perm]
    train = pixels[n_test:]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    X = (pixels - mean) / std
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X = X / np.where(norms > 0, norms, 1.0)
    if len(classes) == 2:
        y = np.where(labels == classes[1], 1.0, -1.0)
    else:
        y = np.where(labels[:, None] == np.asarray(classes)[None, :], 1.0, -1.0)
    info = {"source": "digits", "classes": list(classes), "seed": seed}
    if images:
        X = X.reshape(-1, 8, 8, 1)
        info["images"] = True
    return _split(X, y, n_test, name=f"digits{classes}", info=info)


def load(
    path: str | os.PathLike,
    *,
    y_column: int | None = None,
    n_test: int = 0,
    seed: int = 0,
) -> Dataset:
    """Load a dataset from an `.npz` (arrays `X`, `y`, optionally `X_test`, `y_test`) or a
    numeric `.csv` file (UTF-8, one row per point, numbers separated by commas, an optional
    header line; the target in column `y_column`, the rest are inputs).

    **Arguments:**

    - `path`: the file.
    - `y_column`: the CSV column holding the target, `0..ncols−1` or `−ncols..−1` counting
      from the end (default: the last). CSV only.
    - `n_test`: holds out that many random rows (by `seed`) when the file has no test
      split.
    - `seed`: that split.

    **Raises:** `ValueError` (one line, naming the file and the fix) for a missing file, a
    directory, an unknown suffix, missing or unknown arrays, arrays of Python objects, a
    file that is not UTF-8 text or not numeric, an out-of-range `y_column`, or bad values.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"data file {path!r} is a directory, expected a file (.npz or .csv)")
    if not os.path.exists(path):
        raise ValueError(f"data file {path!r} does not exist; check the path")
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} is not a regular file; give an .npz or .csv file")
    if y_column is not None and (isinstance(y_column, bool) or not isinstance(y_column, int)):
        raise ValueError(f"y_column must be an integer column index, got y_column={y_column!r}")
    _check_seed(seed)
    suffix = os.path.splitext(path)[1].lower()
    name = os.path.basename(path)
    info: dict = {"source": "file", "path": path}
    if suffix == ".npz":
        if y_column is not None:
            raise ValueError(
                f"y_column={y_column} applies to CSV files only; {path!r} holds its targets "
                "in the array y: drop y_column"
            )
        arrays = _read_npz(path)
        data = Dataset(
            arrays["X"],
            arrays["y"],
            arrays.get("X_test"),
            arrays.get("y_test"),
            name=name,
            info=info,
        )
    elif suffix == ".csv":
        table = _read_csv(path)
        ncols = table.shape[1]
        if ncols < 2:
            raise ValueError(f"{path!r} has {ncols} column(s); need inputs and a target column")
        col = ncols - 1 if y_column is None else y_column
        if not -ncols <= col < ncols:
            raise ValueError(
                f"y_column={y_column} is out of range for {path!r}, which has {ncols} "
                f"columns; use 0..{ncols - 1}, or -{ncols}..-1 counting from the end "
                "(default: the last)"
            )
        col %= ncols
        info["y_column"] = col
        X = np.delete(table, col, axis=1)
        data = Dataset(X, table[:, col], name=name, info=info)
    else:
        raise ValueError(f"data file {path!r} must end in .npz or .csv, got {suffix!r}")
    if n_test and data.has_test:
        raise ValueError(
            f"n_test={n_test}: {path!r} has its own test split (X_test, y_test); drop n_test"
        )
    return data.split(n_test, seed=seed) if n_test else data


_NPZ_KEYS = ("X", "y", "X_test", "y_test")


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file, each checked to load without pickle."""
    if not zipfile.is_zipfile(path):
        kind = "a single .npy array" if _is_npy(path) else "not a zip archive"
        raise ValueError(
            f"{path!r} is not a NumPy .npz archive ({kind}); save the arrays with "
            "np.savez(path, X=X, y=y)"
        )
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{path!r} is not a NumPy .npz archive ({_short(e)}); save the arrays with "
            "np.savez(path, X=X, y=y)"
        ) from None
    with f:
        files = sorted(f.files)
        missing = [k for k in ("X", "y") if k not in files]
        if missing:
            raise ValueError(
                f"{path!r} lacks array(s) {missing}; it has {files}: save them with "
                "np.savez(path, X=X, y=y)"
            )
        unknown = [k for k in files if k not in _NPZ_KEYS]
        if unknown:
            raise ValueError(
                f"{path!r} has array(s) {unknown} that ntkflow does not read; it reads X, y "
                "and optionally X_test, y_test: rename or remove them"
            )
        arrays = {}
        for k in files:
            try:
                arrays[k] = f[k]
            except ValueError as e:
                if "allow_pickle" not in str(e):
                    raise ValueError(f"array {k!r} in {path!r} cannot be read ({e})") from None
                raise ValueError(
                    f"array {k!r} in {path!r} holds Python objects (dtype=object), which are "
                    f"not loaded (unpickling can run code); save it as numbers: "
                    f"np.savez(path, {k}=np.asarray({k}, dtype=float), ...)"
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise ValueError(
                    f"array {k!r} in {path!r} cannot be read ({_short(e)}): the file is "
                    "damaged; save it again"
                ) from None
    return arrays


def _read_csv(path: str) -> np.ndarray:
    """A numeric CSV file as a 2-D float array (a header line, if any, skipped)."""
    text = read_utf8(Path(path), what="data file", kind="CSV")
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if lines and not any(_is_number(v) for v in lines[0][1].split(",")):
        lines = lines[1:]  # a header line
    if not lines:
        raise ValueError(f"data file {path!r} has no data rows; give at least one point")
    try:
        return np.loadtxt([line for _, line in lines], delimiter=",", ndmin=2)
    except ValueError:
        pass
    # Find the first bad row for a message that points at it.
    width = len(lines[0][1].split(","))
    for i, line in lines:
        cells = line.split(",")
        for cell in cells:
            if not _is_number(cell):
                hint = "; separate columns with commas" if ";" in line or "\t" in line else ""
                raise ValueError(
                    f"{path!r} line {i}: {cell.strip()!r} is not a number; a numeric CSV "
                    f"holds numbers separated by commas (and an optional header line){hint}"
                )
        if len(cells) != width:
            raise ValueError(
                f"{path!r} line {i} has {len(cells)} columns but line {lines[0][0]} has "
                f"{width}; every row needs the same number of columns"
            )
    raise ValueError(f"{path!r} is not a numeric CSV file; give numbers separated by commas")


def _is_npy(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:120] or type(e).__name__
