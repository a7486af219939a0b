"""The scheduler fix (scripts/engine_factory/scheduling.py): one pending wake-up at a time, a daemon thread, and it
reaches the installed Snakemake."""

import threading
import time

from engine_factory import scheduling


class FakeScheduler:
    def __init__(self):
        self._open_jobs = threading.Semaphore(0)


def _wakeups(scheduler) -> int:
    n = 0
    while scheduler._open_jobs.acquire(blocking=False):
        n += 1
    return n


def test_rounds_share_one_pending_wakeup_which_wakes_the_scheduler_once():
    scheduler = FakeScheduler()
    before = threading.active_count()
    for _ in range(50):  # 50 scheduling rounds within one rate window
        scheduling._schedule_reevaluation_once(scheduler, 0.2)
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    assert threading.active_count() - before == 1 and len(timers) == 1 and timers[0].daemon
    time.sleep(0.5)
    assert _wakeups(scheduler) == 1
    scheduling._schedule_reevaluation_once(scheduler, 0.05)  # the woken round re-arms it
    time.sleep(0.3)
    assert _wakeups(scheduler) == 1


def test_the_fix_reaches_the_pinned_snakemake():
    from snakemake.scheduling.job_scheduler import JobScheduler

    assert scheduling.coalesce_reevaluation_timers(), "Snakemake's scheduler changed: re-measure and re-check the fix"
    assert JobScheduler._schedule_reevalutation is scheduling._schedule_reevaluation_once
