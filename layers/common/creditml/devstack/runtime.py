"""Run a template function's real handler in this process, as Lambda would call it."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from creditml.devstack.template import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_SECONDS, FunctionSpec

Handler = Callable[[dict[str, Any], Any], Any]
_load_lock = threading.Lock()
_modules: dict[str, ModuleType] = {}
_this_thread = threading.local()


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read.

    Build it with `for_function` so memory and timeout are the template's; the defaults
    are Lambda's own, for a function that sets neither.
    """

    function_name: str
    memory_limit_in_mb: int = DEFAULT_MEMORY_MB
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + self.timeout_seconds

    @classmethod
    def for_function(cls, spec: FunctionSpec) -> LambdaContext:
        """A fresh invocation's context for the template function `spec` (its MemorySize
        and Timeout, Globals applied)."""
        return cls(
            function_name=spec.logical_id,
            memory_limit_in_mb=spec.memory_mb,
            timeout_seconds=spec.timeout_seconds,
        )

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout (not enforced locally)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_module(spec: FunctionSpec) -> ModuleType:
    """Import a function's handler module from its CodeUri, once per process."""
    with _load_lock:
        module = _modules.get(spec.logical_id)
        if module is None:
            name = f"creditml_functions.{spec.logical_id}"
            module_spec = importlib.util.spec_from_file_location(name, spec.module_path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot load {spec.module_path}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            _modules[spec.logical_id] = module
        return module


def load_handler(spec: FunctionSpec) -> Handler:
    handler: Handler = getattr(load_module(spec), spec.handler_name)
    return handler


def invoke(spec: FunctionSpec, event: dict[str, Any]) -> Any:
    """Call the function's handler with `event` and a fresh context, as one Lambda invocation.

    The calling thread keeps one event loop for all its invocations, as a Lambda container
    does (Mangum drives the ASGI app on the thread's loop). A fresh loop per call would also
    mean fresh worker threads for the app's sync routes each time, and with them fresh
    thread-local SDK clients: seconds of service-model loading and memory that only grows.
    """
    asyncio.set_event_loop(thread_loop())
    # Loaded with the loop in place: importing a function builds its Mangum adapter,
    # which looks for the thread's loop.
    handler = load_handler(spec)
    return handler(event, LambdaContext.for_function(spec))


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop for invocations, made on first use."""
    loop: asyncio.AbstractEventLoop | None = getattr(_this_thread, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _this_thread.loop = loop
    return loop
