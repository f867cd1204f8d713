"""How long torch's idle OpenMP threads spin in a promptyard process: about a millisecond, not ten (unless you chose).

torch runs CPU ops on an OpenMP thread team (GNU libgomp in the Linux wheels). Between parallel regions its idle
threads busy-wait for 300,000 spins by default, which is ~10 ms of a core after every generation ends. A script
that only generates loses nothing by that; a promptyard process works right after every generation (write the
record, send the answer, take the next request, score code in the sandbox), and on a small CPU box the spinning
thread holds a core that work needs. Measured on the 2-core test machine with the tiny test GPT-2, 64 greedy
tokens: 9-10 ms of CPU after each generation by default, ~2 ms with 30,000 spins, and generation no slower, since
the gaps between ops inside one generation are microseconds. OMP_WAIT_POLICY=PASSIVE (no spinning at all) was
slower: waking a sleeping thread for each of the thousands of small parallel regions of a generation adds up.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

SPIN_COUNT = "30000"
# Any of these set means someone tuned OpenMP's waiting already: leave it to them.
USER_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def shorten_spin_wait() -> bool:
    """Set GOMP_SPINCOUNT for this process and its children unless OpenMP's waiting is tuned already; False when
    left alone, including when torch loaded first (OpenMP reads its settings once, when it loads)."""
    if any(os.environ.get(name) for name in USER_SETTINGS):
        return False
    if "torch" in sys.modules:
        log.debug("torch loaded before promptyard could set GOMP_SPINCOUNT; OpenMP keeps its default")
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
