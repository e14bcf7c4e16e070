"""Inline stylesheet and content-security policy of the HTML report.

No web fonts and no scripts: system font stacks only, and thumbnails enlarge through a
hidden checkbox inside a ``<label>`` (pure CSS), so the report works offline, from a USB
stick, and under a policy that forbids every script.
"""

from __future__ import annotations

__all__ = ["CSP", "CSS"]

#: Nothing may load from anywhere; images only from data URIs; no scripts at all.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

CSS = """
:root{--ink:#1d2433;--muted:#5b6475;--line:#dfe3ea;--bg:#f6f7f9;--card:#fff;
--accent:#1f5fa8;--ok:#1e7b45;--okbg:#e3f4ea;--warn:#8a5a00;--warnbg:#fff4d6;
--bad:#a32121;--badbg:#fde6e6;--skip:#5b6475;--skipbg:#eceef2}
*{box-sizing:border-box}
@media (prefers-reduced-motion:no-preference){html{scroll-behavior:smooth}}
body{margin:0;background:var(--bg);color:var(--ink);
font:15px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",
"Liberation Sans",sans-serif}
header.top{background:#16324f;color:#fff;padding:22px 32px 18px}
header.top h1{margin:0;font-size:26px;font-weight:600;letter-spacing:.2px}
header.top p{margin:4px 0 0;color:#c9d6e6;font-size:14px}
nav.toc{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);
padding:8px 32px;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:14px}
nav.toc a{color:var(--accent);text-decoration:none}
nav.toc a:hover{text-decoration:underline}
main{max-width:1240px;margin:0 auto;padding:8px 32px 48px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:18px 24px 20px;margin:22px 0;scroll-margin-top:48px}
section>h2{margin:0 0 10px;font-size:21px;font-weight:600;color:#16324f}
h3{font-size:16px;margin:20px 0 8px;color:#27364a}
p{margin:6px 0 10px}
.lead{color:var(--muted);margin-top:0}
.note,.empty{color:var(--muted);font-size:13px}
.empty{font-style:italic}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:12px;
margin:6px 0 14px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fbfcfd}
.card .v{font-size:24px;font-weight:600;line-height:1.2}
.card .k{color:var(--muted);font-size:13px}
.card.bad .v{color:var(--bad)}.card.ok .v{color:var(--ok)}
.table-wrap{overflow-x:auto;margin:6px 0 10px;max-height:560px;overflow-y:auto;
border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:13px}
caption{text-align:left;font-weight:600;padding:6px 8px}
th,td{padding:5px 9px;border-bottom:1px solid #eef0f4;text-align:left;vertical-align:top;
white-space:nowrap}
thead th{position:sticky;top:0;background:#f0f3f7;font-weight:600;z-index:1}
tbody tr:nth-child(even){background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{white-space:normal;min-width:420px;max-width:720px}
table.with-meaning tbody tr{background:none}
table.with-meaning th,table.with-meaning td{white-space:normal}
table.with-meaning tbody tr:not(.meaning) td{border-bottom:none}
tr.meaning td{white-space:normal;color:var(--muted);font-size:13px;padding-top:0}
table.kv th{background:#f6f8fa;width:1%;white-space:nowrap}
table.kv td{white-space:normal;word-break:break-all}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600}
td.st-ok span,.st-ok{color:var(--ok)}
td.st-ok{background:var(--okbg)}
td.st-qc-failed{background:var(--warnbg);color:var(--warn);font-weight:600}
td.st-parse-failed,td.st-failed{background:var(--badbg);color:var(--bad);font-weight:600}
td.unusual,b.unusual{background:var(--warnbg);color:var(--warn);font-weight:600}
b.unusual{padding:0 4px;border-radius:3px}
.unusual-box{border-left:4px solid #c98a00;background:var(--warnbg);padding:8px 14px;
border-radius:4px;margin:8px 0 14px}
.unusual-box ul{margin:4px 0;padding-left:20px}
td.st-skipped{background:var(--skipbg);color:var(--skip);font-weight:600}
tr.pass td{background:var(--okbg)}
tr.fail td{color:#444}
td.yes{color:var(--ok);font-weight:600}td.no{color:var(--bad)}
td.low{color:#9aa1ad;font-style:italic}
.failures{border-left:4px solid var(--bad);background:var(--badbg);padding:8px 14px;
border-radius:4px;margin:8px 0 14px}
.failures ul{margin:4px 0;padding-left:20px}
.failures code{font-size:12px;background:#fff;padding:0 4px;border-radius:3px}
.allgood{border-left:4px solid var(--ok);background:var(--okbg);padding:8px 14px;
border-radius:4px;margin:8px 0 14px}
.caveat{border:2px solid #c98a00;background:var(--warnbg);border-radius:8px;
padding:12px 18px;margin:10px 0 16px}
.caveat h3{margin:0 0 6px;color:var(--warn);font-size:16px}
.caveat ol{margin:4px 0 4px;padding-left:22px}.caveat li{margin:3px 0}
.caveat .key{font-size:16px;font-weight:700;color:#5c3c00}
.banner{border-left:5px solid #c98a00;background:var(--warnbg);padding:10px 16px;
border-radius:4px;margin:18px 0 0;font-size:14px}
.banner a{color:#7a4d00}
.flagged{border-left:4px solid var(--ok);background:var(--okbg);padding:8px 14px;
border-radius:4px;margin:8px 0 14px}
.flagged.none{border-left-color:var(--skip);background:var(--skipbg)}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:14px;
margin:8px 0 12px}
.gallery.wide{grid-template-columns:1fr}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:8px;background:#fff}
figure img{display:block;max-width:100%;height:auto;margin:0 auto}
.gallery figure img{max-height:220px;width:auto}
.gallery.wide figure img{max-height:1000px;width:auto}
figcaption{font-size:13px;color:var(--muted);margin-top:6px;text-align:center;
word-break:break-word}
figcaption b{color:var(--ink)}
.mark{display:inline-block;padding:0 7px;margin:3px 3px 0;border-radius:9px;font-size:12px;
background:var(--warnbg);color:var(--warn);font-weight:600}
figure[id],.ggroup,ul.groups{scroll-margin-top:72px}
figure:target{outline:3px solid var(--accent);outline-offset:2px}
ul.groups{display:flex;flex-wrap:wrap;gap:4px 22px;list-style:none;margin:6px 0 10px;
padding:8px 12px;border:1px solid var(--line);border-radius:6px;font-size:13px;color:var(--muted)}
ul.groups a,.ggroup a.up{color:var(--accent);text-decoration:none}ul.groups a{font-weight:600}
.ggroup>h4{font-size:16px;margin:22px 0 6px;padding-bottom:4px;border-bottom:2px solid var(--line)}
.ggroup .count{font-size:13px;font-weight:400;color:var(--muted);margin-left:6px}
.ggroup a.up{float:right;font-size:12px;font-weight:400}
label.zoom{display:block;cursor:zoom-in;position:relative}
label.zoom input{position:absolute;opacity:0;width:1px;height:1px;pointer-events:none}
label.zoom input:focus-visible+img{outline:3px solid var(--accent)}
label.zoom input:checked+img{position:fixed;inset:0;z-index:50;width:100vw;height:100vh;
max-width:none;max-height:none;object-fit:contain;background:rgba(20,26,36,.88);
padding:3vh 3vw;cursor:zoom-out;margin:0}
details.legend{margin:4px 0 12px;font-size:13px}
details.legend summary{cursor:pointer;color:var(--accent)}
.skipped{border-left:4px solid var(--skip);background:var(--skipbg);padding:8px 14px;
border-radius:4px;margin:8px 0 14px}
.skipped ul{margin:4px 0;padding-left:20px}
.hint{font-size:12px;color:var(--muted)}
.methods p{max-width:88ch;overflow-wrap:anywhere}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:10px 12px;
font-size:12px;overflow:auto;max-height:420px;white-space:pre-wrap;word-break:break-all}
footer{color:var(--muted);font-size:12px;text-align:center;padding:10px 0 30px}
@media print{nav.toc{display:none}section{break-inside:avoid-page;border:none}
.table-wrap{max-height:none;overflow:visible}
label.zoom input:checked+img{position:static;width:auto;height:auto;background:none}}
"""
