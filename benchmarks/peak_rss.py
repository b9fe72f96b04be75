"""`python -m benchmarks.peak_rss OUT CMD...`: run CMD, write its peak RSS and exit code to OUT.

Linux carries a process's peak RSS across fork and exec, so a command started straight from
the benchmark process (gigabytes of models and arrays) would report at least that process's
peak. Started from this small process instead, the command's peak is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> int:
    out, cmd = sys.argv[1], sys.argv[2:]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    # wait4 reaped the child: tell Popen, which would otherwise wait on it again.
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out, "w") as fh:
        json.dump({"exit_code": proc.returncode, "peak_rss_bytes": usage.ru_maxrss * 1024}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
