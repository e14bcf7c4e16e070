"""Files with very many parameters: a limit on ``$PAR``, and opening cost linear in channels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from growth import growth_exponent
from test_io_fcs_malformed import build_fcs

import nkflow.io as nio
from nkflow.exceptions import FCSReadError
from nkflow.io.fcs_text import MAX_PARAMETERS
from nkflow.io.fcs_write import write_fcs


def _channels(n: int) -> list[tuple[str, str]]:
    return [(f"C{i}-A", f"marker {i}") for i in range(n)]


def test_default_limit_is_far_above_spectral_panels() -> None:
    # Cytek Aurora 5L writes 440+ parameters (raw + unmixed); the default must not bite.
    assert MAX_PARAMETERS >= 10 * 440


def test_declared_parameters_over_the_limit_are_refused(tmp_path: Path) -> None:
    # 100,000 declared parameters and a single event: refused on $PAR alone, before
    # any per-channel keyword is looked at (the file has none for channels 6..100000).
    path = tmp_path / "wide.fcs"
    path.write_bytes(build_fcs(np.ones((1, 5), np.float32), extra={"$PAR": "100000"}))
    with pytest.raises(FCSReadError) as info:
        nio.read_fcs(path)
    assert info.value.path == path
    assert f"$PAR=100000 declares more parameters than the limit of {MAX_PARAMETERS}" in (
        info.value.reason
    )
    assert "max_parameters" in info.value.reason
    assert "limit" in nio.inspect_files([path]).loc[0, "error"]


def test_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "six.fcs"
    write_fcs(path, np.ones((4, 6), np.float32), [f"C{i}" for i in range(6)])
    with pytest.raises(FCSReadError, match=r"\$PAR=6 declares more parameters than the limit of 5"):
        nio.read_fcs(path, max_parameters=5)
    with pytest.raises(FCSReadError, match="limit of 5"):
        nio.read_fcs_metadata(path, max_parameters=5)
    assert nio.read_fcs(path, max_parameters=6).n_vars == 6


def _writer_file(folder: Path, n_par: int) -> Path:
    """nkflow's own writer: float32 events, one marker per channel."""
    path = folder / f"writer_{n_par}.fcs"
    data = np.random.default_rng(0).uniform(0, 1000, (2000, n_par)).astype(np.float32)
    write_fcs(
        path, data, [f"C{i}-A" for i in range(n_par)], markers=[f"M{i}" for i in range(n_par)]
    )
    return path


def _quirky_file(folder: Path, n_par: int) -> Path:
    """Every per-channel code path: empty $PnN replaced by $PnS, malformed $PnE, gain."""
    chans = [("", f"S{i}") for i in range(n_par)]
    extra = {f"$P{i}G": "2" for i in range(1, n_par + 1)}
    extra.update({f"$P{i}E": "x,y" for i in range(1, n_par + 1, 3)})
    data = np.ones((20, n_par), dtype=np.float32)
    path = folder / f"quirky_{n_par}.fcs"
    path.write_bytes(build_fcs(data, channels=chans, datatype="I", bits=16, extra=extra))
    return path


def _opening(path: Path):
    def run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert nio.read_fcs(path, max_parameters=20_000).n_vars > 0

    return run


@pytest.mark.parametrize(
    ("make", "sizes"),
    [(_writer_file, (250, 500, 1000, 2000, 4000)), (_quirky_file, (1000, 2000, 4000, 8000, 16000))],
    ids=["writer-2000-events", "per-channel-quirks"],
)
def test_open_cost_is_linear_in_parameters(tmp_path: Path, make, sizes: tuple[int, ...]) -> None:
    # time ~ parameters**k: linear code gives k ~ 1 (less with fixed costs), quadratic ~ 2
    exponent = growth_exponent(lambda n_par: _opening(make(tmp_path, n_par)), sizes)
    assert exponent < 1.5, f"opening cost grows as parameters**{exponent:.2f}"
