"""The activations' names, without the functions: what an experiment file may say, checked
without importing JAX (`ntkflow run` and `certify` refuse a bad file in well under a
second). `models._activations.ACTIVATIONS` holds the functions under exactly these names
(a test checks that the two agree)."""

NAMES = ("tanh", "softplus", "sigmoid", "gelu", "erf", "sin", "silu", "relu")
# Aliases accepted in configs; they resolve to the same activation.
ALIASES = {"swish": "silu"}


def canonical_name(name: str) -> str:
    """The activation's name for `name` (case-insensitive, aliases resolved).

    **Raises:** `ValueError` naming the unknown value and the known names.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in NAMES:
        known = ", ".join(sorted([*NAMES, *ALIASES]))
        raise ValueError(f"unknown activation={name!r}; use one of: {known}")
    return key
