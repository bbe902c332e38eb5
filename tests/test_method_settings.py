"""A scenario file's ``method_settings``: each method's tuned settings kept in the file (issue 26)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.compare import plan
from sim.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
PAPER_LM = ROOT / "scenarios" / "lm_micro_paper.yaml"


def _without_settings(tmp_path: Path) -> Path:
    """lm_micro_paper.yaml as it was before it carried method_settings: every method at the paper's values."""
    lines = PAPER_LM.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("method_settings:"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    path = tmp_path / "lm_micro_paper.yaml"
    path.write_text("\n".join(lines[:start] + lines[end:]) + "\n", encoding="utf-8")
    return path


def test_the_file_tunes_a_method_as_method_set_does_with_the_same_digest(tmp_path):
    tuned = load_scenario(PAPER_LM, method="diloco")
    assert tuned.method.outer["lr"] == 0.3
    by_flag = load_scenario(_without_settings(tmp_path), overrides={"method.outer.lr": 0.3}, method="diloco")
    assert tuned.digest() == by_flag.digest()
    soup = load_scenario(PAPER_LM, method="async_diloco").method
    assert soup.outer["lr"] == 0.03 and soup.fix["name"] == "poly" and soup.fix["weight"] == 0.5
    assert load_scenario(PAPER_LM, method="finetune_1w").method.outer is None  # untuned methods are untouched


def test_set_and_method_set_win_over_the_file(tmp_path):
    assert load_scenario(PAPER_LM, overrides={"method.outer.lr": 0.7}, method="diloco").method.outer["lr"] == 0.7
    paper = load_scenario(PAPER_LM, overrides={"method.outer.lr": 0.7, "method.fix": None}, method="async_diloco")
    plain = load_scenario(_without_settings(tmp_path), method="async_diloco")
    assert paper.digest() == plain.digest()  # the paper's values are one flag away


def test_the_file_alone_plans_the_readme_headline_runs():
    """The command in the file's own comment plans exactly the runs of the committed headline table."""
    runs = pd.read_csv(ROOT / "reports" / "paper_lm_micro" / "headline" / "runs.csv")
    specs, _ = plan([PAPER_LM], ["finetune_1w", "diloco", "async_diloco", "dn_dylu"], [0, 1, 2])
    planned = sorted(spec.scenario.digest()[:12] for spec in specs)
    recorded = sorted(Path(f).name.rsplit("-", 1)[1] for f in runs["folder"])
    assert planned == recorded


@pytest.mark.parametrize("section, field", [
    ("method_settings: {nope: {method.outer.lr: 0.3}}", "method_settings.nope"),
    ("method_settings: {diloco: 0.3}", "method_settings.diloco"),
    ("method_settings: [diloco]", "method_settings"),
])
def test_a_bad_section_is_one_line_naming_the_file_and_field(tmp_path, section, field):
    path = tmp_path / "s.yaml"
    path.write_text(f"method: diloco\n{section}\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(path) in str(err.value) and field in str(err.value) and "\n" not in str(err.value)
