"""Run a daemon under a process that reaps its orphans: `python subreaper.py CMD ARGS...`.

libvirtd daemonizes each qemu (and its capability probes); their parent becomes the nearest
subreaper, else PID 1 — which does not reap in this sandbox, so libvirtd would wait on
zombies. This process is that subreaper: it reaps every orphan, forwards SIGTERM/SIGINT to
the daemon and exits with it.
"""
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    daemon = subprocess.Popen(sys.argv[1:])
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: daemon.send_signal(number))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == daemon.pid:
            sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
