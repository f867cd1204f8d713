"""Deployment: the single-port unit (nginx in front of gunicorn and Streamlit) that `promptyard up --single-port`
and the container image run."""
