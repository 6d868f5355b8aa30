"""Slots that never crash the app: an exception becomes a message for the status bar."""

from __future__ import annotations

import functools
import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Errors whose message is written for the user (file, key and reason): shown as they are.
_PLAIN = ("SceneError", "StateFileError", "RecordError", "BackendError", "CapacityError", "NonFiniteError")


def describe(error: BaseException) -> str:
    if type(error).__name__ in _PLAIN or isinstance(error, (OSError, ValueError)):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


def guarded(method: F) -> F:
    """Wrap a method of an object with report_error(str): exceptions are reported, never raised.

    Qt passes signal arguments (e.g. `checked`) to slots; extra positional arguments beyond what the
    method takes are dropped, so one method serves as a slot for any signal.
    """
    params = list(inspect.signature(method).parameters.values())[1:]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *(args if varargs else args[:positional]), **kwargs)
        except Exception as e:
            if type(e).__name__ not in _PLAIN:  # unexpected: keep the traceback for a bug report
                traceback.print_exc(file=sys.stderr)
            self.report_error(describe(e))
            return None

    return wrapper  # type: ignore[return-value]
