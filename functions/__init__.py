"""Lambda entry points. Each folder is one function; its `handler.py` is wiring only.

Importing a function creates a few hundred thousand objects, none of them garbage, and the
cyclic collector would walk them again and again while they load: about 50 ms of a cold
start here. It is paused before anything imports, and each handler calls `started()` once
it is set up, which freezes what was loaded (never scanned again) and resumes collection.
"""

import gc

gc.disable()


def started() -> None:
    gc.freeze()
    gc.enable()
