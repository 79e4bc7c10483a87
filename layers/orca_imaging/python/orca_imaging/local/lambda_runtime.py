"""Invoking handlers in process the way Lambda would: a context object and one import each."""

from __future__ import annotations

import importlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orca_imaging.observability import keep_log_keys_per_thread

if TYPE_CHECKING:
    from orca_imaging.resources import FunctionSpec

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalContext:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "local"
    function_version: str = "$LATEST"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionHost:
    """Loads each function's handler once and invokes it, one invocation at a time.

    Each host is a fresh execution environment: the first load (re)runs the handler
    module's top level, as a Lambda cold start does, so the settings it validates at
    import are this stack's even if an earlier stack in the process imported it.
    Lambda runs one event per environment; the lock keeps module-level state (the
    resolver's current event, the batch processor) from being shared by two threads.
    """

    def __init__(self) -> None:
        keep_log_keys_per_thread()  # functions share this process, unlike in Lambda
        self._handlers: dict[str, Handler] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _load(self, spec: FunctionSpec) -> tuple[Handler, threading.Lock]:
        with self._guard:
            if spec.name not in self._handlers:
                module_name, attr = spec.entry.split(":")
                # Already imported (by an earlier stack in this process): run it again.
                loaded = sys.modules.get(module_name)
                module = importlib.reload(loaded) if loaded else importlib.import_module(module_name)
                self._handlers[spec.name] = getattr(module, attr)
                self._locks[spec.name] = threading.Lock()
            return self._handlers[spec.name], self._locks[spec.name]

    def invoke(self, spec: FunctionSpec, event: dict[str, Any]) -> Any:
        handler, lock = self._load(spec)
        context = LocalContext(
            function_name=f"orca-local-{spec.name}",
            memory_limit_in_mb=spec.memory_mb,
            timeout_seconds=spec.timeout_seconds,
        )
        with lock:
            return handler(event, context)
