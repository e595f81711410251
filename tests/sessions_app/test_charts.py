"""The usage charts' axes: whole ticks for counts, steps of 1, 2 or 5 × 10ⁿ for quantities,
labels with just the decimals their step needs (issue 15: "0, 0.0, 0.1, 0.1, 0.1" and
"0.2 sessions" on the axes before)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions_app.charts import (
    MAX_INTERVALS,
    axis_ticks,
    nice_step,
    stacked_bar_chart,
    tick_label,
    value_label,
)


def _is_nice(step: float) -> bool:
    exponent = math.floor(math.log10(step) + 1e-9)
    mantissa = step / 10**exponent
    return any(math.isclose(mantissa, base) for base in (1, 2, 5))


def _axis_labels(svg: str) -> list[str]:
    # The axis labels are the right-aligned texts (the day labels are centred).
    return re.findall(r'text-anchor="end">([^<]*)</text>', svg)


@pytest.mark.parametrize(
    ("top", "integer", "ticks"),
    [
        (0, True, [0, 1]),
        (0, False, [0, 1]),
        (1, True, [0, 1]),
        (2, True, [0, 1, 2]),
        (3, True, [0, 1, 2, 3]),
        (7, True, [0, 2, 4, 6, 8]),
        (12, True, [0, 5, 10, 15]),
        (99, True, [0, 20, 40, 60, 80, 100]),
        (0.3, False, [0, 0.1, 0.2, 0.3]),
        (0.37, False, [0, 0.1, 0.2, 0.3, 0.4]),
        (1.5, False, [0, 0.5, 1, 1.5]),
        (4.2, False, [0, 1, 2, 3, 4, 5]),
        (0.004, False, [0, 0.001, 0.002, 0.003, 0.004]),
        (1234, False, [0, 500, 1000, 1500]),
    ],
)
def test_axis_ticks_for_a_table_of_tops(top: float, integer: bool, ticks: list[float]) -> None:
    assert axis_ticks(top, integer=integer) == pytest.approx(ticks)


@given(top=st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_a_quantity_axis_covers_its_top_in_a_few_nice_steps(top: float) -> None:
    ticks = axis_ticks(top)
    step = ticks[1]

    assert ticks[0] == 0
    assert _is_nice(step)
    assert 2 <= len(ticks) <= MAX_INTERVALS + 1
    assert ticks[-1] >= top * (1 - 1e-9)
    # The axis does not overshoot by a whole step: the bars fill most of it.
    assert ticks[-2] < top
    # Every label differs from its neighbours, and none repeats ("0.1, 0.1").
    labels = [tick_label(value, step) for value in ticks]
    assert len(set(labels)) == len(labels)


@given(top=st.integers(min_value=0, max_value=10**7))
def test_a_count_axis_has_whole_ticks_only(top: int) -> None:
    ticks = axis_ticks(top, integer=True)
    step = nice_step(top, integer=True)

    assert step >= 1 and float(step).is_integer()
    assert all(float(value).is_integer() for value in ticks)
    assert ticks[-1] >= top
    assert [tick_label(value, step) for value in ticks] == [str(int(v)) for v in ticks]


@pytest.mark.parametrize(
    ("value", "step", "label"),
    [(0, 0.1, "0.0"), (0.2, 0.1, "0.2"), (0.3, 0.1, "0.3"), (0.02, 0.01, "0.02"), (15, 5, "15")],
)
def test_tick_labels_carry_the_decimals_their_step_needs(
    value: float, step: float, label: str
) -> None:
    assert tick_label(value, step) == label


def test_a_count_chart_reads_in_whole_sessions() -> None:
    # Given one session started on one day (counts arrive as ints),
    svg = str(stacked_bar_chart(["1 Mar", "2 Mar"], {"env": [1, 0]}, "Sessions", "sessions"))

    # then the axis reads 0 and 1 only, and the bar says one session, not a fraction.
    assert _axis_labels(svg) == ["0", "1"]
    assert "env, 1 Mar: 1 sessions" in svg
    assert "0.2" not in svg.split("<rect", 1)[0]


def test_a_small_quantity_chart_reads_in_distinct_steps() -> None:
    # Given CPU-hours of a few minutes' sessions,
    svg = str(stacked_bar_chart(["1 Mar", "2 Mar"], {"CPU-hours": [0.31, 0.125]}, "CPU"))

    # the ticks step by 0.1 and no label repeats; the bars keep two decimals at most.
    assert _axis_labels(svg) == ["0.0", "0.1", "0.2", "0.3", "0.4"]
    assert "CPU-hours, 1 Mar: 0.31" in svg
    assert "CPU-hours, 2 Mar: 0.13" in svg or "CPU-hours, 2 Mar: 0.12" in svg


def test_integer_can_be_forced_for_counts_given_as_floats() -> None:
    svg = str(stacked_bar_chart(["a"], {"n": [3.0]}, "Counts", integer=True))

    assert _axis_labels(svg) == ["0", "1", "2", "3"]


@pytest.mark.parametrize(("value", "label"), [(2, "2"), (2.5, "2.5"), (0.123, "0.12"), (3.0, "3")])
def test_value_labels(value: float, label: str) -> None:
    assert value_label(value) == label
