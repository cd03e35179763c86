"""Bar charts as inline SVG, rendered on the server (no JavaScript, no CDN: works offline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 36, 28, 12


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    values: Sequence[int]


def bar_chart(
    *, title: str, labels: Sequence[str], series: Sequence[Series], every: int = 1
) -> SafeString:
    """A (stacked) bar chart: one bar per label, one colour per series; ``every`` thins the
    x-axis labels. Each bar has a <title> tooltip with its figures."""
    count = max(len(labels), 1)
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top = max([*totals, 1])
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / count
    bar_w = max(slot * 0.7, 1.0)
    parts: list[str] = []
    for i, label in enumerate(labels):
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        y_base = float(PAD_TOP + plot_h)
        tip = f"{label}: " + ", ".join(f"{s.label} {s.values[i]}" for s in series)
        rects = []
        for s in series:
            h = plot_h * s.values[i] / top
            y_base -= h
            if h > 0:
                rects.append(
                    f'<rect x="{x:.1f}" y="{y_base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                    f'fill="{escape(s.colour)}"/>'
                )
        parts.append(format_html("<g><title>{}</title>{}</g>", tip, mark_safe("".join(rects))))
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 10}" font-size="10" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    axis = format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>'
        '<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>'
        '<text x="{}" y="{}" font-size="10" text-anchor="end">0</text>',
        PAD_LEFT,
        PAD_TOP + plot_h,
        WIDTH - 8,
        PAD_TOP + plot_h,
        PAD_LEFT - 4,
        PAD_TOP + 8,
        top,
        PAD_LEFT - 4,
        PAD_TOP + plot_h,
    )
    legend = format_html_join(
        "",
        '<tspan fill="{}">&#9632; {}</tspan> ',
        ((s.colour, s.label) for s in series),
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="cockpit-chart" role="img" '
        'viewBox="0 0 {} {}" width="100%" aria-label="{}"><title>{}</title>{}{}'
        '<text x="{}" y="10" font-size="10" text-anchor="end">{}</text></svg>',
        WIDTH,
        HEIGHT,
        title,
        title,
        axis,
        mark_safe("".join(parts)),
        WIDTH - 8,
        legend,
    )
