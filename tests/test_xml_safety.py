"""Hostile GatingML / FlowJo XML is refused before any XML library expands it (issue 9.5).

Also checks that nothing in the package evaluates or unpickles input (eval, exec, pickle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from nkflow.exceptions import GatingTemplateError
from nkflow.gating.flowjo import apply_flowjo_workspace, flowjo_counts
from nkflow.gating.gatingml import apply_gatingml, validate_gatingml
from nkflow.gating.xml_safety import parse_xml_safely, read_xml_safely

PACKAGE = Path(__file__).resolve().parents[1] / "nkflow"
GML_HEAD = (
    '<gating:Gating-ML xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating" '
    'xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes">'
)


def _rect(body: str = "20") -> str:
    return (
        f'{GML_HEAD}<gating:RectangleGate gating:id="R1">'
        f'<gating:dimension gating:compensation-ref="uncompensated" gating:min="{body}">'
        '<data-type:fcs-dimension data-type:name="FSC-H"/></gating:dimension>'
        "</gating:RectangleGate></gating:Gating-ML>"
    )


def _xxe(secret: Path) -> str:
    return (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE gating:Gating-ML [<!ENTITY xxe SYSTEM "file://{secret}">]>\n' + _rect("&xxe;")
    )


def _external_dtd(secret: Path) -> str:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE gating:Gating-ML SYSTEM "file://{secret}">\n' + _rect()
    )


def _billion_laughs() -> str:
    ents = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return f'<?xml version="1.0"?>\n<!DOCTYPE lolz [{"".join(ents)}]>\n' + _rect("&lol9;")


def _quadratic_blowup() -> str:
    big = "A" * 100_000
    return f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "{big}">]><r>{"&a;" * 10_000}</r>'


HOSTILE = {
    "xxe-local-file": _xxe,
    "external-dtd": _external_dtd,
    "billion-laughs": lambda secret: _billion_laughs(),
    "quadratic-blowup": lambda secret: _quadratic_blowup(),
}


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_gatingml_is_refused(kind: str, tmp_path: Path, secret: Path, container) -> None:
    path = tmp_path / f"{kind}.xml"
    path.write_text(HOSTILE[kind](secret))
    with pytest.raises(GatingTemplateError, match="unsafe XML refused") as err:
        apply_gatingml(path, container)
    assert str(path) in str(err.value)
    assert "TOP-SECRET" not in str(err.value)
    assert "R1" not in container.obs  # nothing was gated


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_workspace_is_refused(kind: str, tmp_path: Path, secret: Path) -> None:
    path = tmp_path / f"{kind}.wsp"
    path.write_text(HOSTILE[kind](secret))
    fcs = tmp_path / "x.fcs"
    fcs.write_bytes(b"")
    with pytest.raises(GatingTemplateError, match="unsafe XML refused"):
        apply_flowjo_workspace(path, fcs)
    with pytest.raises(GatingTemplateError, match=str(path.name)):
        flowjo_counts(path)


def test_plain_doctype_without_subset_is_accepted(tmp_path: Path) -> None:
    # FlowJo 9 writes a bare <!DOCTYPE Workspace>: harmless, nothing to expand
    path = tmp_path / "ws.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE Workspace><Workspace a="1"/>')
    assert parse_xml_safely(path).get("a") == "1"


def test_safe_gatingml_still_works(tmp_path: Path, container) -> None:
    path = tmp_path / "ok.xml"
    path.write_text(_rect("20"))
    table = apply_gatingml(path, container)
    expected = container.X[:, 0] >= 20
    assert np.array_equal(container.obs["R1"].to_numpy(), expected)
    assert table.loc[0, "count"] == expected.sum()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("<a><b></a>", "not well-formed"),
        ("", "not well-formed"),
        (_rect(), "larger than the limit"),
    ],
    ids=["mismatched-tags", "empty", "too-large"],
)
def test_bad_xml_is_a_clear_error(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(content)
    limit = 100 if match.startswith("larger") else 1 << 20
    with pytest.raises(GatingTemplateError, match=match):
        read_xml_safely(path, max_bytes=limit)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(GatingTemplateError, match="cannot read"):
        validate_gatingml(tmp_path / "absent.xml")
    with pytest.raises(GatingTemplateError, match="not a file"):
        validate_gatingml(tmp_path)


_FORBIDDEN_CALLS = {"eval", "exec"}
_FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
_FORBIDDEN_ATTRS = {"read_pickle", "to_pickle", "unsafe_load", "full_load"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in _FORBIDDEN_CALLS:
                found.append(f"{where} calls {f.id}()")
            if isinstance(f, ast.Attribute) and f.attr in _FORBIDDEN_ATTRS:
                found.append(f"{where} calls .{f.attr}()")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    found.append(f"{where} passes allow_pickle")
        elif isinstance(node, ast.Import):
            found += [
                f"{where} imports {a.name}"
                for a in node.names
                if a.name.split(".")[0] in _FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in _FORBIDDEN_MODULES:
                found.append(f"{where} imports from {node.module}")
    return found


def test_no_eval_exec_or_pickle_in_the_package() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert files, f"no sources under {PACKAGE}"
    problems = [v for f in files for v in _violations(f)]
    assert not problems, "\n".join(problems)
