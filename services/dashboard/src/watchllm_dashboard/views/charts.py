"""Altair charts the pages share: hourly series, stacked or as lines. Every value must
show, even an hour that stands alone."""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import pandas as pd
import streamlit as st


def _long(hourly: pd.DataFrame, series: Mapping[str, str], scale: float = 1.0) -> pd.DataFrame:
    """hour × {column: label} → long form (hour, series, value)."""
    data = hourly[["hour", *series]].rename(columns=dict(series))
    data = data.melt("hour", var_name="series", value_name="value")
    data["value"] = pd.to_numeric(data["value"], errors="coerce") * scale
    data["hour"] = data["hour"].dt.tz_convert("UTC").dt.tz_localize(None)
    return data


def _encode(
    chart: alt.Chart,
    value_title: str,
    value_format: str,
    colors: Mapping[str, str] | None,
    min_step: float | None = None,
) -> alt.Chart:
    color = alt.Color("series:N", title=None, legend=alt.Legend(orient="top"))
    if colors:
        color = alt.Color(
            "series:N",
            title=None,
            legend=alt.Legend(orient="top"),
            scale=alt.Scale(domain=list(colors), range=list(colors.values())),
        )
    axis = alt.Axis(format=value_format)
    if min_step is not None:  # counts: no fractional ticks
        axis = alt.Axis(format=value_format, tickMinStep=min_step)
    return chart.encode(
        x=alt.X("hour:T", title="hour (UTC)"),
        y=alt.Y("value:Q", title=value_title, axis=axis),
        color=color,
        tooltip=[
            alt.Tooltip("hour:T", title="hour (UTC)", format="%Y-%m-%d %H:00"),
            alt.Tooltip("series:N", title="series"),
            alt.Tooltip("value:Q", title=value_title, format=value_format),
        ],
    )


def stacked_bars(
    hourly: pd.DataFrame,
    series: Mapping[str, str],
    title: str,
    value_title: str,
    colors: Mapping[str, str] | None = None,
) -> None:
    data = _long(hourly, series)
    chart = _encode(alt.Chart(data, title=title).mark_bar(), value_title, ",.0f", colors, 1)
    st.altair_chart(chart, width="stretch")


def lines(
    hourly: pd.DataFrame,
    series: Mapping[str, str],
    title: str,
    value_title: str,
    value_format: str = ",.0f",
    scale: float = 1.0,
    colors: Mapping[str, str] | None = None,
) -> None:
    data = _long(hourly, series, scale)
    # A line needs two neighbouring values to be drawn: with points, an hour that stands
    # alone (one hour of traffic, a fresh install) still shows.
    chart = _encode(
        alt.Chart(data, title=title).mark_line(point=len(hourly) <= 48 or _sparse(data)),
        value_title,
        value_format,
        colors,
    )
    st.altair_chart(chart, width="stretch")


def shares(
    hourly: pd.DataFrame,
    series: Mapping[str, str],
    total: str,
    title: str,
    colors: Mapping[str, str] | None = None,
) -> None:
    """Each series as a share of ``total`` per hour, stacked bars (0–100%). Bars, not
    areas: an area needs two hours with traffic side by side and drew nothing for one
    (always so for "Last hour", and on a fresh install)."""
    data = hourly.copy()
    denominator = pd.to_numeric(data[total], errors="coerce").replace(0, float("nan"))
    for column in series:
        data[column] = pd.to_numeric(data[column], errors="coerce") / denominator
    long = _long(data, series)
    chart = _encode(alt.Chart(long, title=title).mark_bar(), "share of requests", ".0%", colors)
    st.altair_chart(chart, width="stretch")


def _sparse(long: pd.DataFrame) -> bool:
    """Some series has a value with no value in the hour before or after it."""
    for _, values in long.groupby("series", sort=False)["value"]:
        present = values.notna().to_numpy()
        for index, here in enumerate(present):
            before = index > 0 and present[index - 1]
            after = index + 1 < len(present) and present[index + 1]
            if here and not before and not after:
                return True
    return False
