"""gunicorn settings of the single-port unit (`-c python:promptyard.deploy.gunicorn_conf`); the command line adds
the bind address, workers and threads."""

from promptyard.monitoring.metrics import mark_process_dead

worker_class = "gthread"
# A generation can hold a request for minutes; gthread workers heartbeat while their threads work.
timeout = 600
graceful_timeout = 20
# The API writes one JSON line per request itself; gunicorn's own access log would repeat it.
accesslog = None
errorlog = "-"
# Each worker builds its own app (models, queue, thread pool): never load it in the master and fork.
preload_app = False


def child_exit(server, worker):
    """A worker that ended takes its live gauges (queue depth, model memory) out of /metrics."""
    mark_process_dead(worker.pid)
