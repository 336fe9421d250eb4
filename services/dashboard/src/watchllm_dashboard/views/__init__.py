"""Rendering: one module per page, Streamlit only; data comes from ``data`` and
``actions``."""
