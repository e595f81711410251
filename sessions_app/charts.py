"""Bar charts as inline SVG, rendered on the server: the pages fetch no script, font or style
for them (service rule: nothing from the network at run time), and they print and read without
JavaScript. Every text is escaped; the SVG carries no namespace URL (inline SVG in HTML needs
none), so the markup holds no address at all.
"""

from __future__ import annotations

import math
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


#: The steps an axis may take, per power of ten: 1, 2 and 5 read at a glance.
NICE_STEPS = (1, 2, 5)
#: At most this many intervals between the baseline and the top gridline.
MAX_INTERVALS = 5


def nice_step(top: float, *, integer: bool = False, intervals: int = MAX_INTERVALS) -> float:
    """The smallest step of the form 1, 2 or 5 × 10ⁿ that covers ``top`` in at most
    ``intervals`` steps. Counts (``integer``) never step by less than 1: a fraction of a
    session is not a thing to read off an axis."""
    if top <= 0:
        return 1.0
    exponent = math.floor(math.log10(top / intervals))
    while True:
        for base in NICE_STEPS:
            step = base * 10.0**exponent
            if integer and step < 1:
                continue
            # A relative tolerance: 0.3 / 0.1 is 2.9999999999999996 in floating point.
            if math.ceil(top / step - 1e-9) <= intervals:
                return step
        exponent += 1


def axis_ticks(values_max: float, *, integer: bool = False) -> list[float]:
    """The gridline values, from 0 to the first multiple of the step at or above
    ``values_max`` (0 and 1 for an empty chart)."""
    step = nice_step(values_max, integer=integer)
    count = max(1, math.ceil(values_max / step - 1e-9))
    # Multiplying (not adding up) keeps 0.1 × 3 from drifting to 0.30000000000000004 in labels.
    return [round(step * i, 12) for i in range(count + 1)]


def _decimals(step: float) -> int:
    """Enough decimals to tell the ticks of ``step`` apart, and no more."""
    return max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0


def tick_label(value: float, step: float) -> str:
    """``value`` with the decimals its axis's ``step`` needs: ``0, 0.2, 0.4`` or ``0, 5, 10``."""
    return f"{value:.{_decimals(step)}f}"


def value_label(value: float, *, integer: bool = False) -> str:
    """A bar's own value (in its tooltip): whole for counts, two decimals at most otherwise."""
    if integer or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _is_count(series: Mapping[str, Sequence[float]]) -> bool:
    """Counts arrive as ``int`` (database counts), measured quantities as ``float``."""
    return all(
        isinstance(value, int) and not isinstance(value, bool)
        for values in series.values()
        for value in values
    )


def stacked_bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    unit: str = "",
    *,
    integer: bool | None = None,
) -> SafeString:
    """One bar per label, the series stacked in it (a single series: plain bars).

    ``labels`` name the bars (days); each series has one value per label. Each segment carries
    a ``<title>`` (shown on hover) with its series, label and value. ``integer`` says the
    values are counts (whole ticks); by default, when every value is an ``int``.
    """
    names = list(series)
    if integer is None:
        integer = _is_count(series)
    totals = [sum(series[name][i] for name in names) for i in range(len(labels))]
    ticks = axis_ticks(max(totals, default=0), integer=integer)
    top = ticks[-1]
    step = ticks[1]
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
    # Axis: the baseline, and a gridline at each tick with its value.
    for value in ticks:
        y = TOP + plot_h - plot_h * value / top
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{"#444" if value == 0 else "#ddd"}" stroke-width="1"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(tick_label(value, step))}</text>"
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
            tip = f"{name}, {label}: {value_label(value, integer=integer)}"
            tip += f" {unit}" if unit else ""
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
