"""Bar charts drawn as SVG on the server: no chart library, no script, nothing to load.

Every chart is an accessible <svg role="img"> with a title, its bars labelled, and a table
of the same numbers beside it in the page. An empty series draws the axes and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 220
MARGIN_LEFT = 56
MARGIN_BOTTOM = 40
MARGIN_TOP = 12
MAX_LABELS = 10


@dataclass(frozen=True)
class Bar:
    label: str
    value: int


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 x 10^k at least `value` (and at least 1): the axis' top."""
    ceiling = 1
    while True:
        for step in (1, 2, 5):
            if step * ceiling >= value:
                return step * ceiling
        ceiling *= 10


def bar_chart(title: str, bars: list[Bar], unit: str = "credits") -> Markup:
    """A bar chart of `bars` (labels are escaped: model names are user input)."""
    plot_w = WIDTH - MARGIN_LEFT - 8
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    top = nice_ceiling(max((bar.value for bar in bars), default=0))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" '
        f'x2="{WIDTH - 8}" y2="{MARGIN_TOP + plot_h}"/>',
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" '
        f'x2="{MARGIN_LEFT}" y2="{MARGIN_TOP + plot_h}"/>',
        f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + 4}" '
        f'text-anchor="end">{top:,}</text>',
        f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + plot_h}" '
        f'text-anchor="end">0</text>',
    ]
    if not bars:
        parts.append(
            f'<text class="empty" x="{MARGIN_LEFT + plot_w / 2:.0f}" '
            f'y="{MARGIN_TOP + plot_h / 2:.0f}" text-anchor="middle">No {unit} yet</text>'
        )
    slot = plot_w / max(len(bars), 1)
    every = max(1, -(-len(bars) // MAX_LABELS))  # label at most MAX_LABELS bars
    for index, bar in enumerate(bars):
        height = plot_h * bar.value / top
        x = MARGIN_LEFT + index * slot + slot * 0.15
        y = MARGIN_TOP + plot_h - height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}"><title>{escape(bar.label)}: {bar.value:,} {unit}'
            "</title></rect>"
        )
        if index % every == 0:
            label = bar.label if len(bar.label) <= 12 else bar.label[:11] + "…"
            parts.append(
                f'<text class="tick" x="{x + slot * 0.35:.1f}" '
                f'y="{MARGIN_TOP + plot_h + 16}" text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    # Every piece of text in `parts` went through escape() above.
    return Markup("".join(parts))  # noqa: S704
