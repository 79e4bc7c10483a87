"""Log lines stay whole when several processes write them to one pipe, as the DICOM
service's receiving processes do to the task's standard output (`WholeLineHandler`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Each process logs lines of ~60 KB (a long traceback's size), far over the 4 KiB a pipe
# takes whole.
_LOGGING_PROCESS = """
import sys
from orca_imaging.observability import logger
for n in range(400):
    logger.info("long line", extra={"writer": sys.argv[1], "n": n, "padding": sys.argv[1] * 60_000})
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
    assert sorted((line["writer"], line["n"]) for line in parsed) == [
        (name, n) for name in "abc" for n in range(400)
    ]
    assert all(line["padding"] == line["writer"] * 60_000 for line in parsed)
