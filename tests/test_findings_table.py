"""The README's findings table is made from the committed reports, and the README's copy matches them."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sim.cli import app
from sim.findings_table import ROWS, findings_table, read_verdicts, short

ROOT = Path(__file__).resolve().parent.parent


def test_verdicts_are_read_from_report_headings(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# x\n\n### Async is worse (Fig. 7)\n\n**reproduced**\n\n- numbers\n\n"
                      "### Fixes barely help (Fig. 8)\n\n**partly reproduced: poly helps**\n\n", encoding="utf-8")
    verdicts = read_verdicts(report)
    assert verdicts == {"(Fig. 7)": "reproduced", "(Fig. 8)": "partly reproduced: poly helps"}
    assert [short(verdicts.get(ref)) for _, ref in ROWS[:3]] == ["reproduced", "not checked", "partly"]
    table = findings_table([("toy", Path("report.md"))], root=tmp_path)
    assert "[reproduced](report.md)" in table and table.count("not checked") == len(ROWS) - 2
def test_readme_table_matches_the_committed_reports(monkeypatch):
    monkeypatch.chdir(ROOT)
    out = CliRunner().invoke(app, ["findings"], terminal_width=400)
    assert out.exit_code == 0, out.output
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert out.output.strip() in readme
