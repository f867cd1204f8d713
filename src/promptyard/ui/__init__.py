"""The Streamlit UI: a client of the REST API through `promptyard.client`, never of the database."""
