"""The `Dataset` container and the checks every way of making one goes through."""

import json
import math
import numbers
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from numpy.typing import ArrayLike


def _as_float_array(name: str, value: ArrayLike) -> np.ndarray:
    """`value` as float64, refusing what a cast would silently change: complex values
    (the imaginary part dropped), strings ("1.5" parsed), objects."""
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{name} must be a numeric array, got {type(value).__name__} ({e}); give an "
            "array of numbers with the same length in every row"
        ) from None
    if raw.dtype.kind == "c":
        raise ValueError(
            f"{name} has complex values (dtype={raw.dtype}); ntkflow trains on real "
            f"numbers: give {name}.real, or the real and imaginary parts as separate columns"
        )
    if raw.dtype.kind == "O":
        odd = next((v for v in raw.flat if not isinstance(v, numbers.Real)), 0.0)
        if not isinstance(odd, numbers.Real):
            raise ValueError(
                f"{name} must be a numeric array, got dtype=object with an entry {odd!r}; "
                "give numbers only (mark a missing value as nan, and then remove or impute it)"
            )
    if raw.dtype.kind in "USVMm":
        raise ValueError(
            f"{name} must be a numeric array, got dtype={raw.dtype}; convert it to numbers "
            "first (e.g. np.asarray(x, float))"
        )
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{name} must be a numeric array, got dtype={raw.dtype} ({e}); give an array of numbers"
        ) from None


def check_arrays(
    X: ArrayLike, y: ArrayLike, *, names: tuple[str, str] = ("X", "y")
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a design matrix and its targets; return them as float64 NumPy arrays.

    `X` must be `(n, d)` or a batch of images `(n, H, W, C)` (channels last), `y` `(n,)`
    or `(n, k)`, `n ≥ 1`, everything real and finite. A 1-D `X` is refused rather than
    guessed at (`n` points with one feature, or one point with `d`?).

    **Raises:** `ValueError` naming the argument, what was received and the fix.
    """
    xname, yname = names
    X = _as_float_array(xname, X)
    y = _as_float_array(yname, y)
    if X.ndim == 1:
        raise ValueError(
            f"{xname} must be 2-D (n, d), got shape {X.shape}; if it holds one feature per "
            f"point, reshape it to ({X.shape[0]}, 1) yourself ({xname}.reshape(-1, 1))"
        )
    if X.ndim not in (2, 4):
        raise ValueError(
            f"{xname} must be 2-D (n, d) or images (n, H, W, C), got shape {X.shape}; "
            "add a channel axis to grey images (X[..., None])"
        )
    if y.ndim not in (1, 2):
        raise ValueError(f"{yname} must be 1-D (n,) or 2-D (n, k), got shape {y.shape}")
    if X.size == 0:
        raise ValueError(f"{xname} is empty (shape {X.shape}); give at least one point")
    if y.size == 0:
        raise ValueError(f"{yname} is empty (shape {y.shape}); give at least one target")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"{xname} has {X.shape[0]} rows but {yname} has {y.shape[0]}; they must match"
        )
    for name, arr in ((xname, X), (yname, y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            shown = ", ".join(map(str, rows[:5])) + (", …" if rows.size > 5 else "")
            raise ValueError(
                f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf) in "
                f"row(s) {shown}; remove or impute them"
            )
    return X, y


class Metadata:
    """A dataset's name and description. Static in the pytree but ignored by JIT caching
    (all instances compare equal): it never changes a computation, and two datasets that
    differ only in their labels should share compiled code."""

    __slots__ = ("info_json", "name")

    def __init__(self, name: str, info_json: str):
        self.name = name
        self.info_json = info_json

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Metadata)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"Metadata({self.name!r})"


class Dataset(eqx.Module):
    """Training inputs and targets, and an optional held-out test split.

    **Fields:**

    - `X`: inputs `(n, d)`.
    - `y`: targets `(n,)`, or `(n, k)` for vector outputs (flattened point-major to `R^{n·k}`).
    - `X_test`, `y_test`: the held-out split, or `None`.
    - `name`: a label for reports.
    - `info`: a JSON-ready description of how the data were made (source, seed, …).
    """

    X: Float[Array, " n *d"]
    y: Array
    X_test: Float[Array, " n_test *d"] | None
    y_test: Array | None
    meta: "Metadata" = eqx.field(static=True)

    def __init__(
        self,
        X: ArrayLike,
        y: ArrayLike,
        X_test: ArrayLike | None = None,
        y_test: ArrayLike | None = None,
        *,
        name: str = "data",
        info: dict[str, Any] | None = None,
    ):
        Xn, yn = check_arrays(X, y)
        self.X = jnp.asarray(Xn)
        self.y = jnp.asarray(yn)
        if (X_test is None) != (y_test is None):
            raise ValueError("X_test and y_test must be given together (or neither)")
        if X_test is not None and y_test is not None:
            Xt, yt = check_arrays(X_test, y_test, names=("X_test", "y_test"))
            if Xt.shape[1:] != Xn.shape[1:]:
                what = "features" if Xn.ndim == 2 else "per-point shape"
                a, b = (Xt.shape[1], Xn.shape[1]) if Xn.ndim == 2 else (Xt.shape[1:], Xn.shape[1:])
                raise ValueError(f"X_test has {a} {what} but X has {b}; they must match")
            if yt.shape[1:] != yn.shape[1:]:
                raise ValueError(
                    f"y_test has per-point shape {yt.shape[1:]} but y has {yn.shape[1:]}"
                )
            self.X_test, self.y_test = jnp.asarray(Xt), jnp.asarray(yt)
        else:
            self.X_test = self.y_test = None
        self.meta = Metadata(name, json.dumps(info or {}, sort_keys=True, default=str))

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def info(self) -> dict[str, Any]:
        """How the data were made (source, seed, …)."""
        return json.loads(self.meta.info_json)

    @property
    def n(self) -> int:
        """Number of training points."""
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(math.prod(self.X.shape[1:]))

    @property
    def point_shape(self) -> tuple[int, ...]:
        """The shape of one input: `(d,)`, or `(H, W, C)` for images."""
        return tuple(int(s) for s in self.X.shape[1:])

    @property
    def k(self) -> int:
        """Outputs per point."""
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])

    @property
    def has_test(self) -> bool:
        return self.X_test is not None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for reports."""
        out: dict[str, Any] = {"name": self.name, "n": self.n, "d": self.d, "k": self.k}
        out["n_test"] = 0 if self.X_test is None else int(self.X_test.shape[0])
        out.update(self.info)
        return out

    def split(self, n_test: int, *, seed: int = 0) -> "Dataset":
        """Hold out `n_test` random training points as the test split.

        **Raises:** `ValueError` if `n_test` is not in `[1, n − 1]` or a split exists.
        """
        if self.has_test:
            raise ValueError(f"n_test={n_test}: this dataset already has a test split; drop n_test")
        if not 1 <= n_test <= self.n - 1:
            raise ValueError(f"n_test must be between 1 and n-1={self.n - 1}, got n_test={n_test}")
        perm = np.random.default_rng(seed).permutation(self.n)
        test, train = perm[:n_test], perm[n_test:]
        X, y = np.asarray(self.X), np.asarray(self.y)
        return Dataset(X[train], y[train], X[test], y[test], name=self.name, info=self.info)


def from_arrays(
    X: ArrayLike,
    y: ArrayLike,
    *,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    name: str = "arrays",
) -> Dataset:
    """A dataset from arrays: `X` `(n, d)` or images `(n, H, W, C)`, `y` `(n,)` or `(n, k)`,
    optional test split.

    **Raises:** `ValueError` for NaN/inf values, mismatched lengths or empty arrays.
    """
    return Dataset(X, y, X_test, y_test, name=name, info={"source": "arrays"})
