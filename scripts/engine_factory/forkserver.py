"""Imported first by the jobs' forkserver (engine_factory/jobs.py): its children start without re-running Snakemake's
main script.

multiprocessing prepares each child of a forkserver by running the parent's main script (`bin/snakemake`, which
imports snakemake.cli: ~1.4 s) unless the process it forks from has that script as its own `__main__` file
(multiprocessing.spawn's `_fixup_main_from_path`). Python 3.11's forkserver never imports the main script itself
(its preload passes the path under a key it does not read), so the path comes through the environment and becomes
the forkserver's `__main__.__file__`: the children skip the script, which a job never needs, and the forkserver
needs no import of snakemake.cli for their sake.
"""

from __future__ import annotations

import os
import sys

MAIN_ENV = "ENGINE_FACTORY_MAIN_SCRIPT"


def main_script_of_this_process() -> str | None:
    """The path multiprocessing sends children to run as their main script (None: it sends none)."""
    from multiprocessing import spawn

    return spawn.get_preparation_data("engine-factory").get("init_main_from_path")


if os.environ.get(MAIN_ENV) and __name__ != "__main__":
    sys.modules["__main__"].__file__ = os.environ[MAIN_ENV]
