"""The report renders in a real browser: headless Chromium (Debian's `chromium`; `.ci/run`
installs it and sets NTKFLOW_REQUIRE_BROWSER=1 so that a missing browser fails there)."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from ntkflow.config import parse_experiment
from ntkflow.experiment import run_experiment, save_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# Appended to a copy of the report: counts the images that decoded, after `load`.
PROBE = (
    "<script>window.addEventListener('load', () => { const im = [...document.images]; "
    "document.body.setAttribute('data-images', im.length + '/' + "
    "im.filter(i => i.complete && i.naturalWidth > 0).length); });</script>"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("NTKFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (NTKFLOW_REQUIRE_BROWSER=1) but missing")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    out = tmp_path_factory.mktemp("browser") / "run"
    doc = {
        "data": {"source": "sphere", "n": 8, "d": 3, "n_test": 4},
        "model": {"width": 32},
        "problem": {"alpha": 2.0, "centering": "antisymmetric"},
        "flows": {"saves": 6},
    }
    save_run(run_experiment(parse_experiment(doc)), out)
    return out / "report.html"


def _chromium(tmp_path, *args):
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_image_loads(report, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    match = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    total, loaded = map(int, match.groups())
    assert total == 7 and loaded == total


def test_screenshot_is_not_blank(report, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1100,2000", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file()
    pixels = imread(shot)[..., :3]
    ink = np.mean(np.any(pixels < 0.9, axis=-1))  # fraction of pixels that are not white
    assert pixels.shape[0] >= 1000 and 0.02 < ink < 0.9
    assert pixels.std() > 0.05


# Appended to a copy of a report: the page's width against the window's, after `load`.
WIDTH_PROBE = (
    "<script>window.addEventListener('load', () => { document.body.setAttribute("
    "'data-width', document.documentElement.scrollWidth + '/' + window.innerWidth); });"
    "</script>"
)


@pytest.mark.slow
def test_the_sweep_report_has_no_horizontal_page_scroll_at_1280_px(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("NTKFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (NTKFLOW_REQUIRE_BROWSER=1) but missing")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    import ntkflow as nf

    def make_problem(alpha, width, seed):
        data = nf.datasets.sphere(6, 3, n_test=4, seed=seed)
        return nf.Problem(nf.Shallow(width, "tanh"), data, alpha=alpha, key=seed)

    grid = {"alpha": [1.0, 10.0, 100.0], "width": [8, 16], "seed": [0, 1]}
    result = nf.sweep(make_problem, grid, out=tmp_path / "sw", t1=1.0, saveat=4)
    report = result.path / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", WIDTH_PROBE + "</body>"))
    dom = _chromium(
        tmp_path, "--window-size=1280,2000", "--virtual-time-budget=10000", "--dump-dom",
        probe.as_uri(),
    )  # fmt: skip
    match = re.search(r'data-width="(\d+)/(\d+)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    page, window = map(int, match.groups())
    assert window == 1280 and page <= window, (page, window)
    # the points table (12 columns) is all there, scrolling inside its own box if need be
    assert "<div class='wide'><table><tr><th>point</th>" in report.read_text()
