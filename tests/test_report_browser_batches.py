"""Pipeline reports in headless Chromium: the numbers on the cards are the status table's,
and the page never scrolls sideways (wide tables scroll inside their own box).

Two batches: the committed human sample batch (the README's), and a small simulated batch
with every file cut short so every file fails. Screenshots are kept as test artefacts
(in ``$NKFLOW_ARTIFACTS`` when set, else in pytest's temporary folder). Skipped when
Debian's ``chromium`` is absent.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_report_browser import CHROMIUM, chromium, console_lines

from nkflow.pipeline import run
from nkflow.pipeline.steps import ANALYSED_ROLES
from nkflow.report.style import CSP

pytestmark = pytest.mark.browser
assert CHROMIUM is not None  # test_report_browser skips the module otherwise

_CHECK_ID = "nkflow-cards-check"
_CHECK_SCRIPT = f"""<script>
window.addEventListener('load', () => {{
  const cards = Array.from(document.querySelectorAll('.cards .card')).map(c => ({{
    v: c.querySelector('.v').textContent, k: c.querySelector('.k').textContent}}));
  // each gating plot (an SVG): its size, and the share of inked and of coloured pixels
  // (viridis densities, crimson gates) once the browser has rasterised it
  const gating = Array.from(document.querySelectorAll('#gating img')).map(i => {{
    const c = document.createElement('canvas');
    c.width = i.naturalWidth; c.height = i.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(i, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let ink = 0, colour = 0;
    for (let k = 0; k < d.length; k += 4) {{
      const hi = Math.max(d[k], d[k + 1], d[k + 2]), lo = Math.min(d[k], d[k + 1], d[k + 2]);
      if (lo < 240) ink++;
      if (hi - lo > 60) colour++;
    }}
    const n = Math.max(1, d.length / 4);
    return {{src: i.src.slice(0, 30), w: i.naturalWidth, h: i.naturalHeight,
             shown: i.clientWidth, ink: ink / n, colour: colour / n}};
  }});
  const doc = document.documentElement;
  const pre = document.createElement('pre');
  pre.id = '{_CHECK_ID}';
  pre.textContent = JSON.stringify({{cards: cards, scrollWidth: doc.scrollWidth,
    clientWidth: doc.clientWidth, text: document.body.innerText, gating: gating}});
  document.body.appendChild(pre);
}});
</script>"""


def _artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("NKFLOW_ARTIFACTS") or tmp_path / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _inspect(report: Path, tmp_path: Path, width: int) -> dict:
    text = report.read_text(encoding="utf-8")
    allowed = CSP.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    copy = text.replace(html.escape(CSP, quote=True), html.escape(allowed, quote=True), 1)
    page = tmp_path / "check.html"
    page.write_text(copy.replace("<head>", "<head>" + _CHECK_SCRIPT, 1), encoding="utf-8")
    res = chromium("--dump-dom", "--virtual-time-budget=10000", f"--window-size={width},1200",
                   page.as_uri(), user_dir=tmp_path / "ud")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_lines(res.stderr) == [], console_lines(res.stderr)
    match = re.search(rf'<pre id="{_CHECK_ID}">(.*?)</pre>', res.stdout, re.S)
    assert match, res.stdout[-2000:]
    return json.loads(html.unescape(match.group(1)))


def _cards(result: dict) -> dict[str, str]:
    return {c["k"]: c["v"].replace(",", "") for c in result["cards"]}


@pytest.fixture(scope="module")
def sample_run(sample_data: Path, fast_config, tmp_path_factory: pytest.TempPathFactory):
    return run(sample_data / "human", tmp_path_factory.mktemp("sample_run") / "out",
               config=fast_config)  # fmt: skip


@pytest.fixture(scope="module")
def failing_run(tiny_batch: Path, fast_config, tmp_path_factory: pytest.TempPathFactory):
    batch = tmp_path_factory.mktemp("all_fail") / "batch"
    shutil.copytree(tiny_batch, batch)
    for fcs in batch.glob("*.fcs"):
        fcs.write_bytes(fcs.read_bytes()[:400])
    return run(batch, batch.parent / "out", config=fast_config)


@pytest.mark.parametrize("which", ["runs", "all_fail"])
@pytest.mark.parametrize("width", [1280, 800])
def test_cards_equal_the_status_table_and_no_sideways_scroll(
    sample_run, failing_run, tmp_path: Path, which: str, width: int
) -> None:
    res = sample_run if which == "runs" else failing_run
    status = pd.read_csv(res.out_dir / "tables" / "status.csv")
    result = _inspect(res.report_path, tmp_path, width)
    cards = _cards(result)
    st = status["status"].astype(str)
    assert cards["input files"] == str(len(status))
    control = (st == "ok") & (status["reason_code"].astype(str) == "CONTROL")
    assert cards["analysed tubes (ok)"] == str(int(((st == "ok") & ~control).sum()))
    assert cards.get("FMO controls (ok)", "0") == str(int(control.sum()))
    assert cards["failed"] == str(int((~st.isin(["ok", "skipped"])).sum()))
    if (st == "skipped").any():
        assert cards["skipped"] == str(int((st == "skipped").sum()))
    # the page itself never scrolls sideways; wide tables scroll inside their box
    assert result["scrollWidth"] <= result["clientWidth"], result["scrollWidth"]
    # every analysed sample's gating plot (SVG) is drawn: full size, inked, in colour
    analysed = (st == "ok") & status["role"].isin(ANALYSED_ROLES)  # FMO tubes have no plot
    assert len(result["gating"]) == int(analysed.sum())
    for plot in result["gating"]:
        assert plot["src"].startswith("data:image/svg+xml"), plot
        assert plot["w"] >= 500 and plot["h"] >= 200 and plot["shown"] >= 0.3 * width, plot
        assert plot["ink"] > 0.05 and plot["colour"] > 0.01, plot
    if which == "all_fail":
        assert "no file could be analysed" in result["text"]
        assert "the rest of the batch was analysed" not in result["text"]
    shot = _artefacts(tmp_path) / f"report_{which}_{width}.png"
    done = chromium(f"--screenshot={shot}", f"--window-size={width},2400",
                    res.report_path.as_uri(), user_dir=tmp_path / "ud2")  # fmt: skip
    assert done.returncode == 0 and shot.stat().st_size > 10_000
