"""The plateau report's numbers are computed from committed CSVs, and the README quotes them unchanged (issue 23)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "reports" / "lm_micro_plateau"


def test_committed_report_is_what_its_csvs_give():
    done = subprocess.run([sys.executable, str(REPORT / "make.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_readme_quotes_the_plateau_table():
    table = (REPORT / "findings.md").read_text(encoding="utf-8").strip()
    assert table.startswith("| micro LM, full protocol")
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")
