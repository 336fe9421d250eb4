"""Data access: no Streamlit here, so every function can be tested on its own."""
