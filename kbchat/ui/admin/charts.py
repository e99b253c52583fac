"""Charts of the console as inline SVG drawn on the server (no JavaScript library): vertical columns for a
series over time, horizontal bars for counts by name. Labels are escaped; each bar has a <title> tooltip."""

from __future__ import annotations

from markupsafe import Markup, escape


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def columns(points: list[tuple[str, float]], *, height: int = 160, label_every: int | None = None,
            title: str = "") -> Markup:
    """Vertical columns, one per point (label, value), e.g. questions per day; every ``label_every``-th
    label is written under its column (all when they fit)."""
    n = max(len(points), 1)
    width = 1000
    left, bottom, top = 40, 24, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max((v for _, v in points), default=0) or 1
    step = plot_w / n
    every = label_every or max(1, round(n / max(1, plot_w // 70)))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" style="max-width:{width}px" role="img" '
             f'aria-label="{escape(title)}">',
             f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{_fmt(peak)}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#d8dde5"/>']
    for i, (label, value) in enumerate(points):
        h = plot_h * value / peak
        x = left + i * step
        parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}" '
                     f'height="{h:.1f}"><title>{escape(label)}: {_fmt(value)}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(items: list[tuple[str, float]], *, unit: str = "", title: str = "") -> Markup:
    """Horizontal bars, one per (label, value), longest first as given."""
    row, label_w, width = 22, 150, 460
    height = max(row * len(items) + 8, 30)
    peak = max((v for _, v in items), default=0) or 1
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" style="max-width:{width}px" role="img" '
             f'aria-label="{escape(title)}">']
    for i, (label, value) in enumerate(items):
        y = 4 + i * row
        w = (width - label_w - 60) * value / peak
        shown = label if len(label) <= 22 else label[:21] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(shown)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{max(w, 1 if value else 0):.1f}" height="{row - 8}">'
                     f'<title>{escape(label)}: {_fmt(value)}{escape(unit)}</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{_fmt(value)}{escape(unit)}</text>')
    if not items:
        parts.append('<text x="10" y="20">—</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


__all__ = ["bars", "columns"]
