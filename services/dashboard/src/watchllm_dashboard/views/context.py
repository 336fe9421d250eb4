"""What every page is handed: the runtime, the signed-in user's actions, the filters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from watchllm_dashboard.actions import Actions
from watchllm_dashboard.data.analytics import AnalyticsReader
from watchllm_dashboard.data.window import TimeWindow
from watchllm_dashboard.runtime import Runtime
from watchllm_shared.accounts import Project


@st.cache_data(ttl=15, show_spinner=False, max_entries=1000)
def _cached_query(_reader: AnalyticsReader, name: str, key: str) -> pd.DataFrame:
    return _reader.query(name, json.loads(key))


class CachedReader:
    """The process's analytics reader, with each result reused for a few seconds (several
    charts and viewers ask the same question)."""

    def __init__(self, reader: AnalyticsReader, enabled: bool) -> None:
        self._reader = reader
        self._enabled = enabled

    def query(self, name: str, parameters: Mapping[str, Any]) -> pd.DataFrame:
        if not self._enabled:
            return self._reader.query(name, parameters)
        key = json.dumps(parameters, sort_keys=True, default=str)
        return _cached_query(self._reader, name, key).copy()

    def close(self) -> None:
        self._reader.close()


@dataclass(frozen=True)
class PageContext:
    runtime: Runtime
    actions: Actions
    analytics: CachedReader
    project: Project | None
    window: TimeWindow

    @property
    def is_admin(self) -> bool:
        return self.actions.user.is_admin

    def require_project(self) -> Project | None:
        if self.project is None:
            st.info(
                "No project yet. An admin creates one under **Projects & settings** "
                "(or `watchllm projects create NAME`)."
            )
        return self.project
