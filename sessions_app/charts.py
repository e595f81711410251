"""Bar charts as inline SVG, rendered on the server: the pages fetch no script, font or style
for them (service rule: nothing from the network at run time), and they print and read without
JavaScript. Every text is escaped; the SVG carries no namespace URL (inline SVG in HTML needs
none), so the markup holds no address at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe (Okabe–Ito), repeated past eight series.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
WIDTH = 720
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 36
LEGEND_ROW = 18


def _nice_max(value: float) -> float:
    """A round top for the axis, at or above ``value`` (1 for an empty chart)."""
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    for factor in (1, 2, 2.5, 5, 10):
        if value <= step * factor:
            return step * factor
    return value


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def stacked_bar_chart(
    labels: Sequence[str], series: Mapping[str, Sequence[float]], title: str, unit: str = ""
) -> SafeString:
    """One bar per label, the series stacked in it (a single series: plain bars).

    ``labels`` name the bars (days); each series has one value per label. Each segment carries
    a ``<title>`` (shown on hover) with its series, label and value.
    """
    names = list(series)
    totals = [sum(series[name][i] for name in names) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    legend_height = LEGEND_ROW * len(names) if len(names) > 1 else 0
    height = HEIGHT + legend_height
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels))
    bar_w = max(1.0, slot * 0.8)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    # Axis: the baseline, and four gridlines with their values.
    for step in range(5):
        value = top * step / 4
        y = TOP + plot_h - plot_h * step / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{"#444" if step == 0 else "#ddd"}" stroke-width="1"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(_number(value))}</text>"
        )
    every = max(1, len(labels) // 10)  # at most about ten labels under the axis
    for i, label in enumerate(labels):
        x = LEFT + slot * i + (slot - bar_w) / 2
        base = float(TOP + plot_h)
        for n, name in enumerate(names):
            value = series[name][i]
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            tip = f"{name}, {label}: {_number(value)}{' ' + unit if unit else ''}"
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(tip)}</title></rect>'
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    if legend_height:
        for n, name in enumerate(names):
            y = HEIGHT + LEGEND_ROW * n
            parts.append(
                f'<rect x="{LEFT}" y="{y}" width="12" height="12" '
                f'fill="{PALETTE[n % len(PALETTE)]}"/>'
                f'<text x="{LEFT + 18}" y="{y + 11}" font-size="12">{escape(name)}</text>'
            )
    parts.append("</svg>")
    # Safe: every text above is escaped, every number formatted here.
    return mark_safe("".join(parts))
