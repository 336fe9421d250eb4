"""WatchLLM dashboard: the Streamlit app operators and product owners sign in to."""
