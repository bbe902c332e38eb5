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


def test_readme_quotes_the_plateau_table_and_its_findings():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = (REPORT / "findings.md").read_text(encoding="utf-8").strip()
    assert table.startswith("| micro LM, full protocol")
    assert table in readme
    bullets = (REPORT / "summary.md").read_text(encoding="utf-8").strip()  # every number in them computed by make.py
    assert bullets.startswith("- **The inner optimizer state")
    assert bullets in readme
