"""``evapp bench``: speed measurements, always printed with a description of the machine they ran on
(:func:`evapp.machine.describe_machine`)."""

from __future__ import annotations


def format_rows(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table from dict rows; columns are (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append([("" if row.get(k) is None else format(row[k], f)) for k, _, f in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
