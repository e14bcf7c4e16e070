"""The HTML report in a real headless Chromium: no console errors, every image renders.

Skipped (with the reason) when Debian's ``chromium`` is not installed; ``.ci/run`` installs it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import EVIL, build_inputs

from nkflow.report import write_report
from nkflow.report.figures import png_size
from nkflow.report.style import CSP

pytestmark = pytest.mark.browser

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None
)
if CHROMIUM is None:
    pytest.skip(
        "headless Chromium not found (/usr/bin/chromium); install Debian's 'chromium' package "
        "to run the browser test of report.html",
        allow_module_level=True,
    )

_CONSOLE = re.compile(r":INFO:CONSOLE[:(]|Uncaught|Refused to", re.IGNORECASE)
_CHECK_ID = "nkflow-browser-check"
# Runs after load inside a COPY of the report: records image decoding and any error.
_CHECK_SCRIPT = f"""<script>
window.__nkErrors = [];
window.addEventListener('error', e => window.__nkErrors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {{
  const imgs = Array.from(document.images).map(i => ({{
    complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, shown: i.clientWidth}}));
  let zoom = null;
  const box = document.querySelector('label.zoom input');
  if (box) {{
    const img = box.nextElementSibling;
    const before = img.getBoundingClientRect();
    box.checked = true;
    const r = img.getBoundingClientRect();
    zoom = {{before: before.width, w: r.width, h: r.height, vw: innerWidth, vh: innerHeight,
             pos: getComputedStyle(img).position}};
    box.checked = false;
  }}
  const pre = document.createElement('pre');
  pre.id = '{_CHECK_ID}';
  pre.textContent = JSON.stringify({{imgs: imgs, errors: window.__nkErrors,
    title: document.title, scripts: document.scripts.length, zoom: zoom}});
  document.body.appendChild(pre);
}});
</script>"""


def chromium(*args: str, user_dir: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={user_dir}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if _CONSOLE.search(line)]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "out"
    return write_report(out, **build_inputs(hostile=True), title="Browser check <batch>")


def test_console_error_detection_works(tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(
        '<!DOCTYPE html><p>x</p><script>console.error("nk-probe")</script>', encoding="utf-8"
    )
    res = chromium("--dump-dom", probe.as_uri(), user_dir=tmp_path / "ud")
    assert any("nk-probe" in line for line in console_lines(res.stderr)), res.stderr[-2000:]


def test_report_loads_without_console_errors_and_screenshot(report, tmp_path):
    shot = tmp_path / "report.png"
    res = chromium(
        f"--screenshot={shot}", "--window-size=1280,3000", report.as_uri(), user_dir=tmp_path / "ud"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_lines(res.stderr) == [], console_lines(res.stderr)
    width, height = png_size(shot.read_bytes())
    assert (width, height) == (1280, 3000)
    # the page is rendered, not blank: many distinct colours in the screenshot
    assert shot.stat().st_size > 50_000


def test_every_image_renders_and_no_script_runs(report, tmp_path):
    text = report.read_text(encoding="utf-8")
    # a copy that may run exactly one inline script, the check; the report itself has none
    allowed = CSP.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    assert html.escape(CSP, quote=True) in text
    copy = text.replace(html.escape(CSP, quote=True), html.escape(allowed, quote=True), 1)
    copy = copy.replace("<head>", "<head>" + _CHECK_SCRIPT, 1)
    page = tmp_path / "report_check.html"
    page.write_text(copy, encoding="utf-8")
    res = chromium(
        "--dump-dom",
        "--virtual-time-budget=10000",
        "--window-size=1280,2000",
        page.as_uri(),
        user_dir=tmp_path / "ud",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    match = re.search(rf'<pre id="{_CHECK_ID}">(.*?)</pre>', res.stdout, re.S)
    assert match, res.stdout[-2000:]
    result = json.loads(html.unescape(match.group(1)))
    assert result["errors"] == []
    assert result["scripts"] == 1  # only the check: the hostile <script> strings stayed text
    assert result["title"] == "Browser check <batch>"
    assert len(result["imgs"]) == 9
    for img in result["imgs"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
        assert img["shown"] > 0, img
    assert html.escape(EVIL) in res.stdout  # the hostile text is in the DOM as text
    # a click on a thumbnail (its checkbox) fills the window with the figure (pure CSS)
    zoom = result["zoom"]
    assert zoom["pos"] == "fixed"
    assert zoom["w"] >= 0.95 * zoom["vw"] and zoom["h"] >= 0.95 * zoom["vh"]
    assert zoom["before"] < 0.5 * zoom["vw"]
    assert console_lines(res.stderr) == [], console_lines(res.stderr)


_LINK_ID = "nkflow-link-check"
# Runs after load inside a COPY of the report: follows a sample link of the batch overview
# to a plot in the last tissue group (mode "click"), or lets the page open at the plot's
# fragment (mode "url"), then records where the plot is and what is drawn over it.
_LINK_SCRIPT = f"""<script>
window.addEventListener('load', () => {{
  const groups = Array.from(document.querySelectorAll('.ggroup')).filter(
    g => g.querySelector('figure'));
  const last = groups[groups.length - 1];
  let id = location.hash.slice(1);
  if (!id) {{
    const link = Array.from(document.querySelectorAll('#overview a[href^="#gating-"]')).find(
      a => last.contains(document.getElementById(a.getAttribute('href').slice(1))));
    id = link.getAttribute('href').slice(1);
    link.click();
  }}
  setTimeout(() => {{
    const fig = document.getElementById(id);
    const r = fig.getBoundingClientRect();
    const navBottom = document.querySelector('nav.toc').getBoundingClientRect().bottom;
    const hit = document.elementFromPoint(r.left + r.width / 2, Math.max(r.top, navBottom) + 20);
    const pre = document.createElement('pre');
    pre.id = '{_LINK_ID}';
    const target = (document.querySelector(':target') || {{}}).id;
    pre.textContent = JSON.stringify({{id: id, target: target, group: fig.closest('.ggroup').id,
      last: last.id, groups: groups.length,
      top: r.top, bottom: r.bottom, navBottom: navBottom, vh: innerHeight, scrollY: scrollY,
      covered: !fig.contains(hit), shown: fig.offsetWidth > 0 && fig.offsetHeight > 0,
      hit: hit && (hit.tagName + '.' + hit.className), left: r.left, width: r.width}});
    document.body.appendChild(pre);
  }}, 3000);
}});
</script>"""


@pytest.mark.parametrize("mode", ["click", "url"])
def test_a_sample_link_lands_on_its_plot_inside_its_tissue_group(report, tmp_path, mode):
    text = report.read_text(encoding="utf-8")
    allowed = CSP.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    copy = text.replace(html.escape(CSP, quote=True), html.escape(allowed, quote=True), 1)
    page = tmp_path / "report_links.html"
    page.write_text(copy.replace("<head>", "<head>" + _LINK_SCRIPT, 1), encoding="utf-8")
    # the plot of the blood group's last sample (the last group with plots)
    url = page.as_uri() + ("#gating-D2_blood_post" if mode == "url" else "")
    # a headless --dump-dom draws no frames, so a smooth scroll would never move: the
    # report scrolls smoothly only for readers who do not prefer reduced motion
    res = chromium("--dump-dom", "--virtual-time-budget=15000", "--window-size=1280,900",
                   "--force-prefers-reduced-motion", url, user_dir=tmp_path / "ud")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    match = re.search(rf'<pre id="{_LINK_ID}">(.*?)</pre>', res.stdout, re.S)
    assert match, res.stdout[-2000:]
    got = json.loads(html.unescape(match.group(1)))
    assert got["groups"] == 3 and got["group"] == got["last"] == "plots-blood", got
    assert got["target"] == got["id"] and got["id"].startswith("gating-D2_blood_"), got
    assert got["shown"] and not got["covered"], got  # laid out, and not under the nav bar
    # the page scrolled so that the plot's top sits just under the sticky navigation bar
    assert got["scrollY"] > 0, got
    assert got["navBottom"] <= got["top"] <= got["navBottom"] + 80, got
    assert console_lines(res.stderr) == [], console_lines(res.stderr)
