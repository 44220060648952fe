"""The report says only what was shown: each check held, FAILED from a time, or is
inconclusive with its reason; a truncated solve opens the verdict; sweep points that did
not succeed never read as all held."""

import copy
import html
import re

from ntkflow.report import render_report, render_sweep_report
from test_plotting import T1, synthetic_results


def _check(name: str, holds, flow: str = "gradient", **extra) -> dict:
    return {
        "name": name,
        "holds": holds,
        "guaranteed": False,
        "margin": 0.5 if holds is not None else "nan",
        "t": 1.0,
        "value": 1.0,
        "bound": 2.0,
        "error": 0.0,
        "flow": flow,
        "description": f"{name}: value ≤ bound",
        "first_violation": None,
        "reason": None,
        **extra,
    }


def _verdict(page: str) -> str:
    """The verdict section as text, one line per box or list item."""
    part = page[page.index("<h2>Verdict</h2>") : page.index("<h2>Certificate</h2>")]
    part = re.sub(r"</li>|</div>|<ul>", "\n", part)
    return html.unescape(re.sub(r"<[^>]+>", "", part))


def test_a_failed_check_says_when_and_nothing_it_did_not_show():
    _, summary = synthetic_results()
    check = summary["verification"]["checks"][0]
    check.update(first_violation=0.000546, description="‖w(t) − w0‖ ≤ B throughout")
    text = _verdict(render_report(summary, {}))
    line = next(line for line in text.splitlines() if "‖w(t) − w0‖ ≤ B" in line)
    assert line.startswith("FAILED from t = 0.000546 — ")
    assert "∞" not in text and "never" not in text
    # Results written before the description stopped asserting T = ∞ lose that claim.
    check["description"] += " (exit time T = ∞ within the horizon)"
    assert "∞" not in _verdict(render_report(summary, {}))


def test_inconclusive_checks_give_their_reason():
    _, summary = synthetic_results()
    reason = "the value is within its error budget of the bound"
    summary["verification"]["checks"] = [
        _check("loss_envelope_w", True),
        _check("distance_w", None, reason=reason),
        _check("ball_sigma_min", None, reason=None),  # older results: no reason recorded
    ]
    page = render_report(summary, {})
    text = _verdict(page)
    assert f"inconclusive — distance_w: value ≤ bound: {reason}" in text
    assert "inconclusive — ball_sigma_min: value ≤ bound: no finite values were computed" in text
    assert "unclear" not in page
    assert "of 3 conclusions: 1 held, 2 inconclusive." in text


def _truncated_summary() -> dict:
    _, summary = synthetic_results()
    message = (
        "The maximum number of solver steps (max_steps=4) was reached at t=3.6e-10, before "
        "t1=3.2e-06. Increase `max_steps`, loosen `rtol`, or shorten `t1`."
    )
    summary["verification"].update(
        complete=False,
        t_reached=3.6e-10,
        horizon=3.2e-6,
        status="max_steps",
        message=message,
        exit_time=None,
        checks=[
            _check(
                "exit_time",
                None,
                reason="the trajectory stopped at t=3.6e-10 before t1=3.2e-06",
            ),
            _check("distance_u", True, flow="tangent"),
        ],
    )
    summary["solver"].update(status="max_steps", message=message, t1=3.2e-6)
    return summary


def test_a_truncated_solve_opens_the_verdict_with_the_time_reached_and_the_fix():
    page = render_report(_truncated_summary(), {})
    text = _verdict(page)
    first = text.split("\n")[0]
    assert first.startswith("VerdictThe solve stopped early: the solver's step limit")
    assert "reached t = 3.6e-10 of t1 = 3.2e-06" in first and "Increase `max_steps`" in first
    assert text.index("stopped early") < text.index("hypotheses") < text.index("conclusions")
    assert "of 2 conclusions: 1 held, 1 inconclusive (past the time reached)." in text
    assert "did not leave the ball of radius B before t = 3.6e-10" in text
    assert "never" not in text and "all 2 conclusions held" not in text
    assert page.count('class="verdict warn"') == 2  # the truncation, and the checks


def test_older_truncated_results_do_not_claim_checks_held_past_the_stop():
    summary = _truncated_summary()
    ver = summary["verification"]
    for key in ("complete", "t_reached", "status", "message"):
        del ver[key]
    ver["checks"] = [_check("distance_w", True), _check("distance_u", True, flow="tangent")]
    for c in ver["checks"]:
        del c["reason"]  # written before checks had reasons
    text = _verdict(render_report(summary, {}))
    assert text.startswith("VerdictThe solve stopped early")
    assert "of 2 conclusions: 1 held, 1 inconclusive (past the time reached)." in text
    assert "inconclusive — distance_w: value ≤ bound: it held up to where the solve" in text


def test_a_complete_run_that_held_everything_says_so():
    _, summary = synthetic_results()
    summary["verification"].update(exit_time=None, checks=[_check("exit_time", True)])
    text = _verdict(render_report(summary, {}))
    assert "stopped early" not in text
    assert "all 1 conclusions held." in text and f"up to t1 = {T1:g} (T > t1)" in text


def _sweep_summary() -> dict:
    checks = {"exit_time": {"holds": True, "margin": 0.5, "guaranteed": False}}
    point = {
        "assignment": {"problem.alpha": 10.0},
        "status": "success",
        "all_hold": True,
        "checks": checks,
    }
    stopped = {**copy.deepcopy(point), "assignment": {"problem.alpha": 30.0}}
    stopped["status"] = "max_steps"
    failed = copy.deepcopy(point)
    failed.update(assignment={"problem.alpha": 1.0}, all_hold=False)
    failed["checks"]["exit_time"]["holds"] = False
    why = "no α on the grid held every check: at α=1, exit_time failed from t=0.0012"
    return {
        "name": "sweep",
        "keys": ["problem.alpha"],
        "values": [[1.0, 10.0, 30.0]],
        "n_points": 3,
        "points": [failed, point, stopped],
        "critical_alpha": [
            {
                "where": {"problem.seed": 0},
                "alpha_empirical": 10.0,
                "alpha_star": 1e4,
                "looseness": 1e3,
            },
            {
                "where": {"problem.seed": 1},
                "alpha_empirical": "nan",
                "alpha_star": 1e4,
                "looseness": "nan",
                "why": why,
            },
        ],
    }


def test_sweep_points_that_stopped_never_read_as_all_held():
    page = render_sweep_report(_sweep_summary(), {})
    points = html.unescape(re.sub(r"<[^>]+>", " ", page[page.index("<h2>Points</h2>") :]))
    rows = [" ".join(r.split()) for r in points.split("problem.alpha=")[1:]]
    assert rows[0].startswith("1.0 success no (failed: exit_time)")
    assert rows[1].startswith("10.0 success yes")
    assert rows[2].startswith("30.0 max_steps inconclusive (stopped: max_steps)")


def test_sweep_report_says_why_there_is_no_critical_alpha():
    page = render_sweep_report(_sweep_summary(), {})
    crit = page[page.index("<h2>Critical α</h2>") : page.index("<h2>Points</h2>")]
    assert "<th>why there is none</th>" in crit
    assert html.escape("at α=1, exit_time failed from t=0.0012") in crit


def test_hypotheses_resting_on_a_users_beta_say_so_in_the_verdict():
    _, summary = synthetic_results()
    summary["certificate"].update(hypotheses_hold=True, beta_kind="certified")
    assert "β is certified" in _verdict(render_report(summary, {}))
    summary["certificate"]["beta_kind"] = "user"
    text = _verdict(render_report(summary, {}))
    assert "β is certified" not in text
    assert "β is the user's value (not proved by ntkflow)" in text
    assert "guaranteed if the user's β is right" in text
