"""A rendered table: display cells plus the numbers behind them, as Markdown, LaTeX,
HTML or CSV. Tables are built in :mod:`harness.analysis.tables`; this only renders."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

FORMATS = ("md", "latex", "html", "csv")


@dataclass
class Cell:
    text: str
    bold: bool = False


def fmt(value: Any) -> str:
    """Numbers at a precision a paper would print; missing values as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✓" if value else ""
    if isinstance(value, int):
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "—"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_count(value: Any) -> str:
    """Counts and iteration numbers: whole values without decimals."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return fmt(value)
    return str(int(v)) if math.isfinite(v) and v.is_integer() else fmt(value)


def mean_std(mean: float, std: float) -> str:
    if not math.isfinite(std):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(std)}"


def interval(lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "—"
    return f"[{fmt(lo)}, {fmt(hi)}]"


@dataclass
class Table:
    title: str
    columns: List[str]
    rows: List[List[Cell]]
    data: Any                      # pandas.DataFrame of the numbers (CSV output)
    notes: List[str] = field(default_factory=list)
    align: Optional[List[str]] = None   # "l" | "r" | "c" per column
    name: str = "table"            # short id: html anchors, LaTeX labels
    # why the comparison may be unfair (harness.analysis.fairness): printed loudly
    warnings: List[str] = field(default_factory=list)

    def _align(self) -> List[str]:
        return self.align or ["l"] + ["r"] * (len(self.columns) - 1)

    def render(self, format: str) -> str:
        if format not in FORMATS:
            raise ValueError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
        return {"md": self.to_markdown, "latex": self.to_latex, "html": self.to_html, "csv": self.to_csv}[format]()

    def to_markdown(self) -> str:
        def esc(text: str) -> str:
            return text.replace("|", "\\|")

        def cell(c: Cell) -> str:
            return f"**{esc(c.text)}**" if c.bold and c.text else esc(c.text)

        marks = {"l": ":---", "r": "---:", "c": ":---:"}
        lines = [f"**{esc(self.title)}**", ""] if self.title else []
        lines.append("| " + " | ".join(esc(c) for c in self.columns) + " |")
        lines.append("|" + "|".join(marks[a] for a in self._align()) + "|")
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows]
        if self.warnings:
            lines += [""] + [f"**WARNING:** {esc(w)}" for w in self.warnings]
        if self.notes:
            lines += [""] + [f"{note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        def esc(text: str) -> str:
            out = []
            for ch in text:
                out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                            "±": r"$\pm$", "✓": r"\checkmark", "—": "--", "Δ": r"$\Delta$", "≤": r"$\le$"}.get(ch, ch))
            return "".join(out)

        def cell(c: Cell) -> str:
            return f"\\textbf{{{esc(c.text)}}}" if c.bold and c.text else esc(c.text)

        lines = [r"\begin{table}[t]", r"\centering"]
        if self.title:
            lines.append(f"\\caption{{{esc(self.title)}}}")
            lines.append(f"\\label{{tab:{esc(self.name)}}}")
        lines += [f"\\begin{{tabular}}{{{''.join(self._align())}}}", r"\toprule",
                  " & ".join(esc(c) for c in self.columns) + r" \\", r"\midrule"]
        lines += [" & ".join(cell(c) for c in row) + r" \\" for row in self.rows]
        lines.append(r"\bottomrule")
        lines.append(r"\end{tabular}")
        for warning in self.warnings:
            lines.append(f"\\par\\footnotesize\\textbf{{Warning:}} {esc(warning)}")
        for note in self.notes:
            lines.append(f"\\par\\footnotesize {esc(note)}")
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        style = {"l": "left", "r": "right", "c": "center"}
        align = self._align()
        out = [f'<table class="gb-table" id="{html.escape(self.name)}">']
        if self.title:
            out.append(f"<caption>{html.escape(self.title)}</caption>")
        out.append("<thead><tr>" + "".join(f'<th style="text-align:{style[a]}">{html.escape(c)}</th>'
                                          for c, a in zip(self.columns, align)) + "</tr></thead>")
        out.append("<tbody>")
        for row in self.rows:
            tds = []
            for c, a in zip(row, align):
                text = html.escape(c.text)
                tds.append(f'<td style="text-align:{style[a]}">' + (f"<strong>{text}</strong>" if c.bold else text)
                           + "</td>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</tbody></table>")
        for warning in self.warnings:
            out.append(f'<p class="gb-warn"><strong>Warning:</strong> {html.escape(warning)}</p>')
        if self.notes:
            out.append('<p class="gb-notes">' + "<br>".join(html.escape(n) for n in self.notes) + "</p>")
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        return self.data.to_csv(index=False)
