"""Lambda entry points. Each folder is one function; its `handler.py` is wiring only."""
