"""One process of a multi-process run, run as a child and watched, so that its end is one line.

When a process of a multi-process JAX run dies, JAX's coordination service notices its missing
heartbeats and ends every other process with a fatal C++ log message, an abort and a screenful of
stack trace, which no Python code in that process can catch. So ``dcgan train --num-processes N``
runs the training in a child process: its output passes through, except the C++ runtime's log
lines (kept back, and read for the cause), and a child that dies from a signal becomes a one-line
error that says what happened and how to go on. The child, when it fails with an error of its
own, prints it and leaves at once (``leave``), before JAX's exit-time shutdown barrier could
wait for a process that is gone.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

from dcgan_export.errors import DcganError

WORKER = "DCGAN_MULTIPROCESS_WORKER"  # set in the child: it trains instead of supervising
RUNTIME_LOG = re.compile(r"^([IW]\d{4} |\[Gloo\] )")  # the C++ runtime's routine log lines
RUNTIME_FAILING = re.compile(r"^[EF]\d{4} ")  # its errors: what follows is the runtime going down
NEVER_JOINED = ("RegisterTask", "CoordinationServiceAgent::Connect")  # the runtime gave up waiting at the join
PEER_LOST = ("heartbeat timeout", "detected fatal errors", "unhealthy", "Connection closed by peer")


def is_worker() -> bool:
    return os.environ.get(WORKER) == "1"


def supervise(argv: list[str], process_id: int, run: str, coordinator: str | None) -> None:
    """Run ``dcgan <argv>`` as the child that trains; return when it succeeded, else raise."""
    child = subprocess.Popen([sys.executable, "-m", "dcgan_export.cli", *argv], stderr=subprocess.PIPE, text=True,
                             errors="replace", env=dict(os.environ, **{WORKER: "1"}))
    held_back: collections.deque[str] = collections.deque(maxlen=200)
    try:
        failing = False
        for line in child.stderr:
            failing = failing or bool(RUNTIME_FAILING.match(line))
            if (RUNTIME_LOG.match(line) or failing) and not line.startswith("Error: "):
                held_back.append(line)
            else:
                sys.stderr.write(line)
                sys.stderr.flush()
        code = child.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C; let it write its checkpoint and stop
        child.wait()
        raise
    if code == 0:
        return
    if code > 0:  # the child has printed its own one-line error
        raise SystemExit(code)
    log = "".join(held_back)
    if any(sign in log for sign in NEVER_JOINED):
        from .hardware import join_timeout

        raise DcganError(f"process {process_id} could not join the run at {coordinator} within {join_timeout()} s: "
                         "start every process with the same command and its own --process-id", exit_code=1)
    if any(sign in log for sign in PEER_LOST):
        raise run_stopped(process_id, run, "another process of the run died or stopped answering")
    raise run_stopped(process_id, run, f"it was ended by signal {-code}")


def run_stopped(process_id: int, run: str, why: str) -> DcganError:
    """The one line a process of a multi-process run ends with when the run cannot go on."""
    return DcganError(f"process {process_id} of the run stopped: {why}; start every process again with "
                      f"`dcgan train --resume {run}` and its --coordinator, --num-processes and --process-id",
                      exit_code=1)


def leave(message: str, code: int) -> None:
    """The child's one-line error, and an exit that skips the interpreter's shutdown (and so JAX's
    shutdown barrier with the other processes, which would abort this one noisily)."""
    sys.stdout.flush()
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()
    os._exit(code)
