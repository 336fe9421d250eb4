"""What ``python -m watchllm_dashboard`` serves: the app (``app.py``) plus the export
route (``export_route``), on Streamlit's Starlette server (``st.App``, Streamlit 1.67).

The routes given are matched before Streamlit's own. The route reaches the same runtime
as the pages (``main.shared_runtime``: one per process). ``streamlit run server.py``
serves the same (Streamlit finds ``app`` here).
"""

from pathlib import Path

import streamlit as st

from watchllm_dashboard.export_route import Exporter, routes
from watchllm_dashboard.main import shared_runtime

app = st.App(
    Path(__file__).with_name("app.py"),
    routes=routes(lambda: Exporter.of(shared_runtime())),
)
