"""Log and metrics lines stay whole when several processes write them to one pipe, as the
DICOM service's processes do to the task's standard output (`observability.whole_lines`)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading

from orca_imaging.observability import WholeLineOutput

# Each process logs lines of ~60 KB (a long traceback's size), far over the 4 KiB a pipe
# takes whole, and after every tenth counts 150 of each of three metrics: Powertools prints
# each metric's first hundred itself (a line, then its newline: two writes), and the
# service's own flush, as each minute, writes the rest.
_LOGGING_PROCESS = """
import sys
from orca_imaging.observability import logger, metrics, write_whole_lines
write_whole_lines()  # as each of the DICOM service's processes does first
for n in range(400):
    logger.info("long line", extra={"writer": sys.argv[1], "n": n, "padding": sys.argv[1] * 60_000})
    if n % 10 == 9:
        for name in ("DicomObjectsReceived", "DicomObjectsStored", "DicomStoreBytes"):
            for _ in range(150):
                metrics.add_metric(name=name, unit="Count", value=1)
        metrics.flush_metrics()
"""


def test_lines_of_processes_sharing_a_pipe_are_never_cut_into_each_other() -> None:
    read, write = os.pipe()
    writers = [
        subprocess.Popen([sys.executable, "-c", _LOGGING_PROCESS, name], stdout=write) for name in "abc"
    ]
    os.close(write)
    with os.fdopen(read, "rb") as output:
        lines = output.read().splitlines()
    assert [writer.wait(60) for writer in writers] == [0, 0, 0]

    parsed = [json.loads(line) for line in lines]  # a line cut into by another fails here
    published = [line for line in parsed if "_aws" in line]
    for name in ("DicomObjectsReceived", "DicomObjectsStored", "DicomStoreBytes"):  # not one lost
        assert sum(len(line.get(name, [])) for line in published) == 3 * 40 * 150
    parsed = [line for line in parsed if "_aws" not in line]
    assert sorted((line["writer"], line["n"]) for line in parsed) == [
        (name, n) for name in "abc" for n in range(400)
    ]
    assert all(line["padding"] == line["writer"] * 60_000 for line in parsed)


def test_a_threads_line_goes_out_whole_when_it_ends_whatever_other_threads_wrote_meanwhile() -> None:
    """`print` writes a line, then its newline: another thread's line in between stays out
    of it."""
    written = io.StringIO()
    output = WholeLineOutput(written)
    output.write('{"from": "a"}')  # this thread's line, not yet ended
    other = threading.Thread(target=print, args=('{"from": "b"}',), kwargs={"file": output})
    other.start()
    other.join()
    output.write("\n")
    output.write('{"unfinished": ')
    assert written.getvalue() == '{"from": "b"}\n{"from": "a"}\n'
    output.flush()  # whoever flushes wants the rest out
    assert written.getvalue().endswith('\n{"unfinished": ')
