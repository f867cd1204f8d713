"""The child side of template rendering: a process that renders one template at a time under a memory limit.

Run as `python -m promptyard.prompts.render_worker MEMORY_BYTES`. It reads JSON requests
{"template", "context"} from stdin and answers {"text"} or {"error": {"code", "message", "details"}} on stdout,
each framed by multiprocessing's length-prefixed connection. Its address space is capped (RLIMIT_AS) at what it
used at start plus MEMORY_BYTES, so no intermediate value can grow past the budget: the allocation fails with
MemoryError, the worker answers, and exits (a process that hit its limit is not trusted to be healthy). The time
budget is kept by the parent, which kills a worker that does not answer in time.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from multiprocessing.connection import Connection


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def serve(memory_bytes: int) -> None:
    """Answer render requests until stdin closes (the parent went away) or a render runs out of memory."""
    from promptyard.prompts.templates import render_in_sandbox  # imported before the limit: imports allocate

    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    # A template cannot print, but nothing else may write into the reply channel either.
    sys.stdout = sys.stderr
    limit = _address_space_bytes() + memory_bytes
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:  # a tighter limit set from outside stays; an unprivileged one cannot rise
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard if hard != resource.RLIM_INFINITY else limit))
    # Starting up is not part of any render's time budget: the parent waits for this before sending one.
    replies.send_bytes(b'{"ready": true}')
    while True:
        try:
            request = json.loads(requests.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            reply = json.dumps(render_in_sandbox(request["template"], request["context"])).encode()
        except MemoryError:
            reply = None
        if reply is None:  # outside the except block, so the failed render's frames are gone
            replies.send_bytes(b'{"error": {"code": "render_memory_budget"}}')
            return
        replies.send_bytes(reply)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
