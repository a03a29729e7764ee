"""Our warnings reach the log even in a host that rebuilds Python's logging tree, as AReaL's
``areal.utils.logging.getLogger`` does on every call (new root and manager, then a dictConfig with
``disable_existing_loggers``). Run in a child process: the rebuild is global and permanent."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import logging, logging.config
from tau_adapters.runtime.logs import get_logger

def rebuild_like_areal():
    logging.Logger.root = logging.RootLogger(logging.WARNING)
    logging.Logger.manager = logging.Manager(logging.Logger.root)
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": True})

seen = []
class Keep(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())

logging.root.addHandler(Keep())  # where the process's handlers are (basicConfig, pytest, Ray)
log = get_logger("tau_adapters.test_logs")
log.warning("before")
rebuild_like_areal()
log.warning("after the rebuild")
plain = logging.getLogger("tau_adapters.test_logs_plain")
rebuild_like_areal()
plain.warning("a plain logger taken between rebuilds is lost")
log.warning("still here")
print(seen)
"""


def test_records_reach_the_process_root_after_the_tree_is_rebuilt() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == str(["before", "after the rebuild", "still here"])
