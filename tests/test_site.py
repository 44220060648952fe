"""Checks of the built docs site (`make docs` builds `site/` and then runs these, marked
`site`): each tutorial page carries the figures its executed code drew, the API pages
have an entry for every public name, and the math is rendered."""

import base64
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
TUTORIALS = sorted(p.stem for p in (ROOT / "docs" / "tutorials").glob("*.py"))

pytestmark = pytest.mark.site


def _page(*parts: str) -> str:
    path = SITE.joinpath(*parts, "index.html")
    assert path.is_file(), f"{path} was not built: run `make docs`"
    return path.read_text()


def _output_images(html: str) -> list[tuple[int, int]]:
    """The (width, height) of each PNG in an executed cell's output."""
    sizes = []
    for chunk in html.split("jp-RenderedImage jp-OutputArea-output")[1:]:
        found = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', chunk[:2_000_000])
        assert found is not None, "an image output without a PNG"
        png = base64.b64decode(found.group(1))
        assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
        sizes.append(struct.unpack(">II", png[16:24]))
    return sizes


def test_there_are_four_tutorials():
    assert TUTORIALS == ["lecture", "migrating", "pytorch", "width"]


@pytest.mark.parametrize("name", TUTORIALS)
def test_each_tutorial_page_has_its_figures(name):
    html = _page("tutorials", name)
    sizes = _output_images(html)
    assert sizes, f"tutorials/{name}: no figure in the executed outputs"
    assert all(w >= 300 and h >= 200 for w, h in sizes), sizes
    assert "Traceback" not in html and "jp-OutputArea-error" not in html
    assert "Conclusion" in html
    # Relative links lead to built pages (a notebook's links are not rewritten by mkdocs).
    here = SITE / "tutorials" / name
    for href in re.findall(r'<a[^>]* href="([^"#:]+)(?:#[^"]*)?"', html):
        target = (here / href).resolve()
        assert (target / "index.html").is_file() or target.is_file(), (name, href)


def test_the_api_pages_have_every_public_name():
    # Each public object has an entry (mkdocstrings' heading id) under one of its names.
    from helpers import public_objects

    html = "".join(_page("api", p.stem) for p in (ROOT / "docs" / "api").glob("*.md"))
    ids = set(re.findall(r'id="(ntkflow\.[A-Za-z0-9_.]+)"', html))
    objects = public_objects()
    assert len(objects) > 100
    for _, names in objects.values():
        assert any(n in ids for n in names), names


def test_every_guide_is_a_page_and_math_is_typeset():
    # MathJax 3 reads the guides' \( \) (arithmatex) and the notebooks' $ $ and $$ $$
    # (typeset in a browser: test_the_tutorials_math_is_typeset_in_a_browser).
    config = (SITE / "javascripts" / "mathjax.js").read_text()
    assert '["$", "$"]' in config and '["$$", "$$"]' in config and r'["\\(", "\\)"]' in config
    for page in (ROOT / "docs").glob("*.md"):
        name = page.stem
        html = _page() if name == "index" else _page(name)
        assert "javascripts/mathjax.js" in html and "mathjax@3" in html, name
    for name in ("lecture", "width"):
        cells = _page("tutorials", name).split("jp-RenderedMarkdown")[1:]
        assert any(re.search(r"\$[^$]+\$", c[:5000]) for c in cells), name


MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"


def _mathjax() -> Path:
    """MathJax 3's `es5` folder from the npm registry (the package the CDN serves),
    fetched once into `.pytest_cache/mathjax`."""
    import tarfile

    home = ROOT / ".pytest_cache" / "mathjax"
    es5 = home / "package" / "es5"
    if not (es5 / "tex-mml-chtml.js").is_file():
        npm = shutil.which("npm")
        assert npm, "the math check needs npm for MathJax (apt-get install npm; .ci/run does)"
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "pack", "mathjax@3", "--silent"], cwd=home, check=True)
        with tarfile.open(next(home.glob("mathjax-3*.tgz"))) as tar:
            tar.extractall(home, filter="data")
    return es5


def test_the_tutorials_math_is_typeset_in_a_browser(tmp_path):
    # The built site, served over HTTP with MathJax from npm in place of the CDN, rendered
    # by headless Chromium: each tutorial's $…$ and $$…$$ become MathJax's output.
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the math check needs chromium (apt-get install chromium; .ci/run does)"
    site = tmp_path / "site"
    shutil.copytree(SITE, site)
    shutil.copytree(_mathjax(), site / "mathjax" / "es5")
    for page in site.rglob("*.html"):
        page.write_text(page.read_text().replace(MATHJAX_CDN, "/mathjax/es5/tex-mml-chtml.js"))
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=site,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = re.search(r"port (\d+)", server.stdout.readline())
        assert port, "http.server did not start"
        for name, raw in (("lecture", r"\alpha \;\ge"), ("width", r"m^{-1/2}")):
            dom = subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    f"--user-data-dir={tmp_path / 'profile'}",
                    "--virtual-time-budget=20000",
                    "--dump-dom",
                    f"http://127.0.0.1:{port.group(1)}/tutorials/{name}/",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            ).stdout
            assert dom.count("<mjx-container") >= 5, (name, dom[-500:])
            assert re.search(r'<mjx-container[^>]*display="true"', dom), name
            assert raw not in dom, f"{name}: {raw} left as TeX source"
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def test_the_home_pages_example_runs(tmp_path, monkeypatch, capsys):
    # docs/index.md's "Ten lines", as a reader would paste them (results go to tmp_path).
    text = (ROOT / "docs" / "index.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/index.md", "exec"), {})
    assert (tmp_path / "results" / "first" / "report.html").is_file()
    assert "Verification(" in capsys.readouterr().out
