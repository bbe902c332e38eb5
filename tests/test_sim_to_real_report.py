"""The README's headline on the simulated clock says what reports/sim_to_real/make.py computed, not a typed copy."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _flat(path: Path) -> str:
    return " ".join(path.read_text().split())


def test_the_readmes_unpadded_counts_are_the_reports():
    errors, readme = _flat(ROOT / "reports/sim_to_real/errors.md"), _flat(ROOT / "README.md")
    one = re.search(r"One worker: (\d+) of (\d+) runs finish within 10% .*? at its own step time, (\d+) of (\d+) runs "
                    r"are within 5%", errors)
    two = re.search(r"2 workers: (\d+) of (\d+) runs finish within 10% .*? at its own step time, (\d+) of (\d+) runs "
                    r"are within 5% and (\d+) within 10%", errors)
    assert one and two, "errors.md lost its un-padded summary lines"
    assert (f"with one worker and the server on the other core, {one[1]} of {one[2]} runs finish within 10% of the "
            "calibrated simulation") in readme
    assert f"at each run's own measured step time, {one[3]} of {one[4]} runs are within 5%" in readme
    assert f"{two[1]} of {two[2]} runs finish within 10%" in readme
    assert f"at their own step times {two[5]} of {two[4]} are within 10%" in readme
