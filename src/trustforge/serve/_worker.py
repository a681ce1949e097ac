"""A model worker process: `python -m trustforge.serve._worker FD` (started by `ProcessExecutor`).

FD is this process's end of a socket pair; everything else (what to load, the batches) comes
through it. See `_workers` for the protocol.
"""

import sys
from multiprocessing.connection import Connection

from trustforge.serve._workers import _worker_main

if __name__ == "__main__":
    _worker_main(Connection(int(sys.argv[1])))
