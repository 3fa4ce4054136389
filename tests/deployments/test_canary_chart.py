"""deployments/canary_chart.py: pure, no database."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployments import canary_chart as chart
from deployments.canary_chart import Bucket, Marker, Sample

SVG = "{http://www.w3.org/2000/svg}"
T0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)


def _minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def _render(buckets: list[Bucket], **overrides) -> str:
    arguments = {
        "start": T0,
        "end": T0 + _minutes(60),
        "title": "Error rate",
        "description": "Canary v2 and stable v1.",
        "chart_id": "canary-chart-production",
        **overrides,
    }
    return chart.error_rate_svg(buckets, **arguments)


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, parsed to check it is well-formed


def _series(root: ET.Element, track: str) -> ET.Element:
    return next(
        g for g in root.iter(f"{SVG}g") if g.get("class") == f"ac-chart-series ac-chart-{track}"
    )


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (_minutes(0), 1),
        (_minutes(60), 1),
        (_minutes(61), 2),
        (_minutes(300), 5),
        (dt.timedelta(hours=24), 30),
        (dt.timedelta(days=7), 180),
        (dt.timedelta(days=60), 1440),
        (dt.timedelta(days=1000), 30240),
    ],
)
def test_choose_bucket_minutes__span__smallest_nice_width_within_max_buckets(span, expected):
    assert chart.choose_bucket_minutes(span) == expected


@given(st.integers(min_value=0, max_value=10_000_000))
def test_choose_bucket_minutes__any_span__at_most_max_buckets(minutes):
    width = chart.choose_bucket_minutes(_minutes(minutes))

    assert minutes / width <= chart.MAX_BUCKETS
    assert width in chart.BUCKET_MINUTES or width % chart.BUCKET_MINUTES[-1] == 0


@pytest.mark.parametrize(
    ("moment", "minutes", "expected"),
    [
        (T0 + _minutes(7), 5, T0 + _minutes(5)),
        (
            T0
            + _minutes(
                59,
            ),
            60,
            T0,
        ),
        (T0 + dt.timedelta(hours=13), 1440, T0.replace(hour=0)),
        (dt.datetime(2025, 3, 1, 10, 7, 30), 5, dt.datetime(2025, 3, 1, 10, 5)),
    ],
)
def test_bucket_start__moment__aligned_to_the_epoch(moment, minutes, expected):
    assert chart.bucket_start(moment, minutes) == expected


def test_bucket_start__other_time_zone__same_instant_and_zone_kept():
    cet = dt.timezone(dt.timedelta(hours=1))
    moment = dt.datetime(2025, 3, 1, 11, 7, tzinfo=cet)

    start = chart.bucket_start(moment, 60)

    assert start == dt.datetime(2025, 3, 1, 11, 0, tzinfo=cet)
    assert start.tzinfo == cet


def test_bucket_samples__minutes__summed_per_arm_and_empty_buckets_left_out():
    samples = [
        Sample(T0, "stable", 100, 2),
        Sample(T0 + _minutes(1), "stable", 100, 1),
        Sample(T0 + _minutes(4), "canary", 10, 1),
        Sample(T0 + _minutes(20), "stable", 0, 0),
        Sample(T0 + _minutes(31), "canary", 5, 0),
    ]

    buckets = chart.bucket_samples(samples, minutes=5)

    assert [(b.start, b.stable, b.canary) for b in buckets] == [
        (T0, chart.ArmPoint(200, 3), chart.ArmPoint(10, 1)),
        (T0 + _minutes(30), chart.ArmPoint(0, 0), chart.ArmPoint(5, 0)),
    ]
    assert buckets[0].end == T0 + _minutes(5)


def test_bucket_samples__unknown_track__value_error():
    with pytest.raises(ValueError, match="unknown track 'shadow'"):
        chart.bucket_samples([Sample(T0, "shadow", 1, 0)], minutes=1)


def test_arm_point__no_outcomes__rate_is_none_not_zero():
    assert chart.ArmPoint(0, 0).rate is None
    assert chart.ArmPoint(4, 1).rate == 0.25


@pytest.mark.parametrize(
    ("rate", "top"),
    [
        (0, 0.01),
        (0.004, 0.01),
        (0.01, 0.01),
        (0.011, 0.02),
        (0.021, 0.025),
        (0.03, 0.05),
        (0.07, 0.1),
        (0.1, 0.1),
        (0.26, 0.5),
        (0.9, 1.0),
        (1.0, 1.0),
    ],
)
def test_nice_ceiling__rate__next_round_top_between_1_and_100_percent(rate, top):
    assert chart.nice_ceiling(rate) == pytest.approx(top)


def test_error_rate_svg__no_data__says_so_and_draws_no_series():
    svg = _render([])

    root = _parse(svg)
    assert "No outcomes reported yet." in svg
    for track in ("stable", "canary"):
        assert list(_series(root, track)) == []
    assert root.find(f"{SVG}desc").text.endswith("No outcomes reported yet.")


def test_error_rate_svg__single_bucket__one_point_per_arm_and_no_line():
    bucket = Bucket(T0, T0 + _minutes(1), chart.ArmPoint(100, 2), chart.ArmPoint(10, 1))

    root = _parse(_render([bucket]))

    for track in ("stable", "canary"):
        series = _series(root, track)
        assert len(series.findall(f"{SVG}circle")) == 1
        assert series.findall(f"{SVG}polyline") == []
    tip = _series(root, "canary").find(f"{SVG}circle/{SVG}title").text
    assert tip == "10:00:00 to 10:01:00 canary: 10 % (1 of 10)"


def test_error_rate_svg__bucket_without_canary_outcomes__breaks_the_canary_line():
    # Given three neighbouring buckets; the canary has no outcomes in the middle one
    buckets = [
        Bucket(T0 + _minutes(i), T0 + _minutes(i + 1), chart.ArmPoint(50, 1), chart.ArmPoint(n, 0))
        for i, n in enumerate((5, 0, 5))
    ]

    root = _parse(_render(buckets))

    stable, canary = _series(root, "stable"), _series(root, "canary")
    assert len(stable.findall(f"{SVG}polyline")) == 1
    assert len(stable.find(f"{SVG}polyline").get("points").split()) == 3
    assert canary.findall(f"{SVG}polyline") == []  # two isolated points, no 0 % between them
    assert len(canary.findall(f"{SVG}circle")) == 2


def test_error_rate_svg__higher_rate__drawn_higher_and_axis_rounded():
    bucket = Bucket(T0, T0 + _minutes(60), chart.ArmPoint(100, 1), chart.ArmPoint(100, 3))

    root = _parse(_render([bucket]))

    stable_y = float(_series(root, "stable").find(f"{SVG}circle").get("cy"))
    canary_y = float(_series(root, "canary").find(f"{SVG}circle").get("cy"))
    assert canary_y < stable_y  # SVG y grows downwards
    labels = [
        t.text
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "ac-chart-grid"
        for t in g.findall(f"{SVG}text")
    ]
    assert labels == ["0 %", "2.5 %", "5 %"]


def test_error_rate_svg__markup_in_texts__escaped_everywhere():
    hostile = "<script>alert('x')</script> & \"quotes\""

    svg = _render(
        [Bucket(T0, T0 + _minutes(1), chart.ArmPoint(1, 0), chart.ArmPoint(0, 0))],
        title=hostile,
        description=hostile,
        markers=[Marker(T0 + _minutes(5), hostile)],
        time_zone=hostile,
        chart_id='x" onload="alert(1)',
    )

    assert "<script>" not in svg
    assert "onload=" not in svg
    # title; description and time zone in desc; marker; time zone on the axis
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;"
    assert svg.count(escaped) == 5
    root = _parse(svg)
    assert root.find(f"{SVG}title").text == hostile
    assert root.get("id") == "x-onload-alert-1"


def test_error_rate_svg__accessible__title_and_desc_named_by_aria():
    bucket = Bucket(T0, T0 + _minutes(5), chart.ArmPoint(1000, 12), chart.ArmPoint(200, 4))

    root = _parse(_render([bucket], title="Error rate of support-bot"))

    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == (
        "canary-chart-production-title canary-chart-production-desc"
    )
    assert root.find(f"{SVG}title").get("id") == "canary-chart-production-title"
    desc = root.find(f"{SVG}desc")
    assert desc.get("id") == "canary-chart-production-desc"
    assert "1 buckets of 5 minutes" in desc.text
    assert "stable: 1.2 % (12 of 1,000 outcomes failed)" in desc.text
    assert "canary: 2 % (4 of 200 outcomes failed)" in desc.text


def test_error_rate_svg__markers__only_those_inside_the_window():
    svg = _render(
        [],
        markers=[Marker(T0 + _minutes(30), "to 25 %"), Marker(T0 - _minutes(1), "to 0.5 %")],
    )

    assert ">to 25 %</text>" in svg
    assert "to 0.5 %" not in svg


def test_error_rate_svg__a_week_of_minutes__stays_small():
    # Given a week of per-minute counts on both arms
    samples = [
        Sample(T0 + _minutes(m), track, 50, m % 3)
        for m in range(7 * 1440)
        for track in ("stable", "canary")
    ]
    end = T0 + dt.timedelta(days=7)
    width = chart.choose_bucket_minutes(end - T0)

    # When
    buckets = chart.bucket_samples(samples, minutes=width)
    svg = _render(buckets, end=end)

    # Then
    assert len(buckets) <= chart.MAX_BUCKETS + 1
    assert len(svg) < 40_000
    assert "01 Mar 10:00" in svg  # dates on the axis of a long span


def test_error_rate_svg__end_before_start__still_renders():
    svg = _render([], end=T0 - _minutes(5))

    assert _parse(svg).get("viewBox") == "0 0 640 220"


_samples = st.lists(
    st.builds(
        Sample,
        start=st.integers(min_value=0, max_value=600).map(lambda m: T0 + _minutes(m)),
        track=st.sampled_from(["stable", "canary"]),
        n=st.integers(min_value=0, max_value=1000),
        errors=st.just(0),
    ).flatmap(
        lambda s: st.integers(min_value=0, max_value=s.n).map(
            lambda e: Sample(s.start, s.track, s.n, e)
        )
    ),
    max_size=80,
)


@given(_samples)
def test_error_rate_svg__any_samples__well_formed_with_one_point_per_arm_with_outcomes(samples):
    buckets = chart.bucket_samples(samples, minutes=chart.choose_bucket_minutes(_minutes(600)))

    root = _parse(_render(buckets, end=T0 + _minutes(600)))

    for track in ("stable", "canary"):
        expected = sum(1 for b in buckets if b.arm(track).n)
        assert len(_series(root, track).findall(f"{SVG}circle")) == expected
    assert sum(b.stable.n + b.canary.n for b in buckets) == sum(s.n for s in samples)
