"""`max_learning_rate`: the largest step at which gradient descent on the mean squared
error is stable in the kernel regime (docs/theory.md, "Predictions in function space")."""

from typing import Any

import numpy as np
import scipy.linalg

from ._layout import as_matrix


def max_learning_rate(
    ntk_train_train: Any, y_train_size: int | None = None, momentum: float = 0.0, eps: float = 1e-12
) -> float:
    """`2(1 + momentum)·N/(λ_max(Θ) + eps)`: gradient descent on `‖f − y‖²/(2N)` moves
    the residual by `I − ηΘ/N`, a contraction for `η < 2N/λ_max` (and by a factor
    `1 + momentum` more with heavy-ball momentum, Goh 2017). `N` is `y_train_size`, or
    the kernel's rows when not given (neural-tangents 0.6.5's signature and value)."""
    K = np.asarray(as_matrix(ntk_train_train), dtype=np.float64)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got momentum={momentum!r}")
    n = K.shape[0] if y_train_size is None else y_train_size
    top = scipy.linalg.eigvalsh(K, subset_by_index=[K.shape[0] - 1, K.shape[0] - 1])[-1]
    return float(2 * (1 + momentum) * n / (top + eps))
