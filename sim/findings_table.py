"""The README's findings table: one row per finding of the paper, one column per reproduction.

Built from the committed ``report.md`` files that ``asyncsim reproduce``
wrote (each finding is a ``### claim (Fig. N)`` heading followed by its
``**verdict**``), so the table cannot drift from the reports: a test checks
that the README's copy equals what :func:`findings_table` makes.
"""
from __future__ import annotations

import re
from pathlib import Path

#: row label -> the paper reference that ends the finding's heading in report.md
ROWS = (
    ("Async DiLoCo worse than DiLoCo per update, even homogeneous (Fig. 7)", "(Fig. 7)"),
    ("Outer SGD: async beats sync; Nesterov: sync wins (Fig. 6)", "(Fig. 6)"),
    ("Staleness fixes barely help; buffer helps, unstable early (Fig. 8)", "(Fig. 8)"),
    ("DN + DyLU matches DiLoCo per update, faster per wall-clock (Fig. 2, Table 1)", "(Fig. 2, Table 1)"),
    ("c = 0 vs 0.1 make little difference (Table 4)", "(Table 4)"),
    ("Local-SGD beats finetune (k x batch), more so late (Tables 1-3)", "(Tables 1-3)"),
    ("k = 4, 8, 16: advantage over finetune shrinks; DN + DyLU within DiLoCo's spread (Table 2)", "(Table 2)"),
    ("Model sizes: DN + DyLU close to DiLoCo, async DiLoCo behind (Table 3)", "(Table 3)"),
)


def read_verdicts(report: Path) -> dict[str, str]:
    """Paper reference -> verdict (the bold line under each ``###`` finding)."""
    verdicts = {}
    for match in re.finditer(r"^### (.+)\n\n\*\*(.+?)\*\*", report.read_text(encoding="utf-8"), flags=re.M):
        claim, verdict = match.groups()
        ref = re.search(r"\([^()]*\)$", claim.strip())
        if ref:
            verdicts[ref.group(0)] = verdict
    return verdicts


def short(verdict: str | None) -> str:
    """reproduced / partly / not / not checked; "(indicative)" after it for a verdict on fewer than 3 seeds."""
    if verdict is None:
        return "not checked"
    indicative = re.match(r"indicative \(n = \d+\): ", verdict)
    if indicative:
        return short(verdict[indicative.end():]) + " (indicative)"
    if verdict.startswith("partly"):
        return "partly"
    return "reproduced" if verdict.startswith("reproduced") else "not"


def findings_table(columns: list[tuple[str, Path]], root: Path = Path(".")) -> str:
    """A markdown table; each cell links to the report its verdict comes from ("not run yet" if it does not exist)."""
    verdicts = [(label, report, read_verdicts(root / report) if (root / report).is_file() else None)
                for label, report in columns]
    lines = ["| finding of the paper | " + " | ".join(label for label, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for row, ref in ROWS:
        cells = []
        for _label, report, found in verdicts:
            if found is None:  # the reproduction has not been run (or committed) yet
                cells.append("not run yet")
                continue
            text = short(found.get(ref))
            cells.append(text if text == "not checked" else f"[{text}]({report.as_posix()})")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
