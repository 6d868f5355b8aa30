"""Atomic file writes: a temporary file beside the target, renamed over it only when complete."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Temporary files of the writes in progress on the main thread, removed if SIGTERM ends the process.
_pending: set[Path] = set()


def _remove_pending_and_terminate(signum, frame) -> None:
    """SIGTERM's default action ends the process at once and would leave the temporary files behind:
    remove them, then end the process by SIGTERM as it would have been."""
    for tmp in list(_pending):
        tmp.unlink(missing_ok=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _guard_sigterm() -> bool:
    """Have SIGTERM remove the pending files first, unless the program handles SIGTERM itself (then, like
    a Ctrl-C, it reaches the write as an exception and the cleanup below runs) or this is not the main
    thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGTERM)
    if handler is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _remove_pending_and_terminate)
    return signal.getsignal(signal.SIGTERM) is _remove_pending_and_terminate


def _release_sigterm(tmp: Path) -> None:
    _pending.discard(tmp)
    if not _pending and signal.getsignal(signal.SIGTERM) is _remove_pending_and_terminate:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back (they arrive right after) while a temporary file is created and
    registered, so that no signal finds it unknown to the cleanup."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path`, on failure (an
    exception, Ctrl-C or SIGTERM) it goes.

    `suffix` keeps the extension that writers infer formats from (e.g. ".mp4")."""
    path = Path(path)
    tmp: Path | None = None
    guarded = False
    try:
        with _signals_held():
            fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.resolve().parent)
            os.close(fd)
            tmp = Path(name)
            guarded = _guard_sigterm()
            if guarded:
                _pending.add(tmp)
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        if guarded:
            _release_sigterm(tmp)
