"""The certificate's rows, as the console and the report show them: the quantity, its
value and what it is, with the formulas of the certificate's loss (docs/theory.md, "The
theorem" and "Losses other than the square")."""

import math
from typing import Any


def _is_inf(v: Any) -> bool:
    return v == "inf" or (isinstance(v, float) and math.isinf(v))


def certificate_rows(cert: dict[str, Any], beta_meaning: str) -> list[tuple[str, Any, str]]:
    """`(quantity, value, meaning)` for a certificate's `to_dict(details=True)` (saved
    certificates from before losses had no `loss` key: the squared loss)."""
    loss = cert.get("loss", "squared")
    rows: list[tuple[str, Any, str]] = [
        ("n, p", f"{cert['n']}, {cert['p']}", "outputs, parameters"),
        ("α", cert["alpha"], "scale"),
    ]
    if loss == "squared":
        rows.append(("R0", cert["R0"], "initial loss ½‖αf(w0) − y‖²"))
    else:
        mu, L = cert.get("mu", math.nan), cert.get("L", math.nan)
        rows += [
            ("loss", loss, f"μ = {mu:.4g} (strong convexity), L = {L:.4g} (smoothness) in z"),
            ("R0", cert["R0"], f"initial loss R(αf(w0)) ({loss})"),
            ("‖∇R(z0)‖", cert.get("grad0", math.nan), "the loss's gradient at z0 = αf(w0)"),
        ]
        if not _is_inf(cert.get("delta_R0", "inf")):
            rows.append(("ΔR0", cert["delta_R0"], "‖∇R(z0)‖²/(2μ) ≥ R0 − inf R, in place of R0"))
    rows += [
        ("σ_min", cert["sigma_min"], "σ_n(J_0) = sqrt(λ_min(K0))"),
        ("σ_max", cert["sigma_max"], "σ_1(J_0) = sqrt(λ_max(K0))"),
        ("cond(K0)", cert.get("condition", "nan"), "(σ_max/σ_min)²"),
        ("β", f"{_num(cert['beta'])} ({cert['beta_kind']})", beta_meaning),
        ("B", cert["B"], "radius of the proof's ball, σ_min/(2β)"),
    ]
    if loss == "squared":
        rows += [
            ("α*", cert["alpha_star"], "β·sqrt(1152σ_max²R0)/σ_min³"),
            ("B'", cert["B_prime"], "distance bound 3·sqrt(8σ_max²R0)/(ασ_min²)"),
            ("tangent bound", cert["tangent_distance_bound"], "sqrt(2σ_max²R0)/(ασ_min²)"),
        ]
    elif cert.get("mu", 0) > 0:
        rows += [
            ("α*", cert["alpha_star"], "β·sqrt(1152σ_max²·L·ΔR0)/(μσ_min³)"),
            ("B'", cert["B_prime"], "distance bound 3·sqrt(8σ_max²·L·ΔR0)/(αμσ_min²)"),
            (
                "tangent bound",
                cert["tangent_distance_bound"],
                "sqrt(2σ_max²·L·ΔR0)/(αμσ_min²)",
            ),
        ]
    else:
        none = "none: the loss is not strongly convex (μ = 0)"
        rows += [("α*", "—", none), ("B'", "—", none)]
    return rows


def _num(v: Any) -> str:
    if isinstance(v, str):
        return {"inf": "∞", "-inf": "−∞"}.get(v, v)
    return f"{v:.6g}" if math.isfinite(v) else ("∞" if v > 0 else str(v))
