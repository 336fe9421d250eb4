"""The Streamlit script: ``streamlit run app.py`` (``python -m watchllm_dashboard`` does it)."""

from watchllm_dashboard.main import run

run()
