"""One fix to Snakemake's job scheduler (9.27.1, pinned), applied by the workflow at start-up (issue 13).

After every scheduling round, the scheduler starts a `threading.Timer` that wakes it again when its job-rate window
(`--max-jobs-per-timespan`, default 100/1s) has passed, so that jobs held back by the rate limit get their turn. The
woken round starts another timer, and so does every round a finished job triggers: the timers never stop and their
number grows by one per finished job. On a 4-model zoo (97 jobs, `--cores 1`) the scheduler ran 2,138 rounds, each
with a thread start and an event loop (`job_selector` -> `async_run`): ~64 ms of main-process CPU per job, growing
with the run (measured with cProfile, benchmarks/README.md). Each timer also outlives the run by up to a second
(timers are non-daemon threads, which the interpreter waits for at exit).

The fix keeps the rate limit's meaning: at most one wake-up is pending at a time (any round re-arms it, so a job
held back is still looked at again within the window), and it is a daemon thread.
"""

from __future__ import annotations

import threading

_pending = threading.Lock()  # held while a wake-up is pending


def _schedule_reevaluation_once(scheduler, delay: float) -> None:
    """The scheduler's wake-up after `delay` seconds, unless one is already pending."""
    if not _pending.acquire(blocking=False):
        return

    def wake():
        _pending.release()
        scheduler._open_jobs.release()

    timer = threading.Timer(delay, wake)
    timer.daemon = True
    timer.start()


def coalesce_reevaluation_timers() -> bool:
    """Patch Snakemake's scheduler (see the module doc); False, and nothing changed, where its internals differ
    from the pinned version's (the run then pays the cost, nothing breaks)."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    if not callable(getattr(JobScheduler, "_schedule_reevalutation", None)):  # sic: Snakemake's own spelling
        return False
    JobScheduler._schedule_reevalutation = _schedule_reevaluation_once
    return True
