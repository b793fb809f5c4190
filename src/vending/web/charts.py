"""Bar charts as server-rendered SVG: no script, no library, nothing fetched (the CSP allows none).

Colours are presentation attributes, not style attributes, which `style-src 'self'` would block.
"""

from __future__ import annotations

from markupsafe import Markup, escape

BAR = "#2563eb"
GRID = "#cbd5e1"
INK = "#0f172a"
MUTED = "#475569"


def horizontal_bars(items: list[tuple[str, int, str]], title: str, width: int = 640) -> Markup:
    """One bar per (label, value, value text), longest first as given; labels on the left."""
    row, label_width, text_width = 28, 180, 110
    height = max(1, len(items)) * row + 8
    top = max((value for _, value, _ in items), default=0) or 1
    bar_room = width - label_width - text_width
    parts = [_open(width, height, title)]
    if not items:
        parts.append(f'<text x="8" y="20" fill="{MUTED}" font-size="14">No sales in this period'
                     "</text>")
    for index, (label, value, text) in enumerate(items):
        y = 4 + index * row
        length = round(bar_room * value / top)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 18}" text-anchor="end" fill="{INK}"'
            f' font-size="13">{escape(_clip(label, 24))}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{max(length, 1)}" height="{row - 10}"'
            f' fill="{BAR}" rx="3"><title>{escape(label)}: {escape(text)}</title></rect>'
            f'<text x="{label_width + length + 6}" y="{y + 18}" fill="{INK}"'
            f' font-size="13">{escape(text)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def vertical_bars(values: list[int], labels: list[str], title: str, width: int = 640,
                  height: int = 200) -> Markup:
    """One bar per value (e.g. the 24 hours of a day), labels under every third bar."""
    bottom, left = 24, 32
    plot_height = height - bottom - 8
    slot = (width - left) / max(1, len(values))
    top = max(values, default=0) or 1
    parts = [_open(width, height, title),
             f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}"'
             f' stroke="{GRID}"/>',
             f'<text x="{left - 4}" y="16" text-anchor="end" fill="{MUTED}" font-size="11">{top}'
             "</text>"]
    for index, (value, label) in enumerate(zip(values, labels)):
        bar = round(plot_height * value / top)
        x = left + index * slot
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{height - bottom - bar}" width="{max(slot - 2, 1):.1f}"'
            f' height="{bar}" fill="{BAR}"><title>{escape(label)}: {value}</title></rect>')
        if index % 3 == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - 8}" text-anchor="middle"'
                         f' fill="{MUTED}" font-size="11">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
            f' width="100%" role="img" aria-label="{escape(title)}" class="chart">'
            f"<title>{escape(title)}</title>")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
