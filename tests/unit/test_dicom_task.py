"""`dicom_task.yield_cores`: the DICOM service's first process lowers its threads' CPU
priority (the drain yields the cores to the receivers), and must start even when a thread
ends while it does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

from orca_imaging import dicom_task

if TYPE_CHECKING:
    import pytest

LOWERED_IN_A_CHILD = """
import os, threading
from orca_imaging.dicom_task import yield_cores
def priority(thread):
    return os.getpriority(os.PRIO_PROCESS, thread)
started, done = threading.Event(), threading.Event()
def waits():
    started.set()
    done.wait()
other = threading.Thread(target=waits)
other.start()
started.wait()
yield_cores(5, sparing=threading.get_native_id())
print(priority(threading.get_native_id()), priority(other.native_id))
later = threading.Thread(target=lambda: print(priority(threading.get_native_id())))
done.set()
later.start()
later.join()
"""


def test_every_thread_but_the_spared_one_is_lowered() -> None:
    # In a process of its own: the test process's threads keep their priority.
    child = [sys.executable, "-c", LOWERED_IN_A_CHILD]
    shown = subprocess.run(child, capture_output=True, text=True, check=True)
    spared, lowered, started_by_spared = (int(line) for line in shown.stdout.split())
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert (spared, lowered, started_by_spared) == (base, base + 5, base)


def test_a_thread_ending_meanwhile_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    ending = threading.Thread(target=release.wait)
    ending.start()
    lowered: list[int] = []

    def set_priority(which: int, thread: int, priority: int) -> None:
        if thread == ending.native_id:  # gone between the listing and its turn
            raise ProcessLookupError(3, "No such process")
        lowered.append(thread)

    monkeypatch.setattr(os, "setpriority", set_priority)
    try:
        dicom_task.yield_cores(10)
    finally:
        release.set()
        ending.join()
    assert threading.get_native_id() in lowered
    assert ending.native_id not in lowered
