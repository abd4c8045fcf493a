"""What ``python -m cesped.train`` and ``python -m cesped.infer`` print and return when they fail.

Exit status 1 with one line on stderr for a file error (naming the path: an output directory that
is a file or not writable, a missing checkpoint or stack), a bad value (``ValueError``) or a bad
override (Hydra's own message); ``128 + signal`` (143) for a training stopped by SIGTERM
(:class:`TrainingInterrupted`). ``HYDRA_FULL_ERROR=1`` shows the whole traceback instead.
Kept free of heavy imports: a wrong output directory is reported before torch is loaded.

Example usage
-------------
    @hydra.main(config_path="pkg://cesped.configs", config_name="train", version_base="1.3")
    def main(cfg):
        with one_line_errors("cesped.train"):
            train(cfg)

    if __name__ == "__main__":
        run_hydra_cli("cesped.train", main)
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cesped._cli import error_line

__all__ = ["TrainingInterrupted", "one_line_errors", "run_hydra_cli"]

_OURS = "CESPED_CLI_SET_HYDRA_FULL_ERROR"


class TrainingInterrupted(RuntimeError):
    """Training stopped by a signal before its budget was spent.

    Attributes
    ----------
    signum : int
        The signal (``signal.SIGTERM``).
    checkpoint : str or None
        The checkpoint written at the interruption; None when none was (no
        ``callbacks.interrupt_checkpoint``).
    epoch, global_step : int
        Where training stopped.
    exit_status : int
        ``128 + signum``, the shell's status of a process ended by that signal.
    """

    def __init__(self, signum: int, checkpoint: str | None, epoch: int, global_step: int):
        self.signum = int(signum)
        self.checkpoint = checkpoint
        self.epoch = int(epoch)
        self.global_step = int(global_step)
        self.exit_status = 128 + self.signum
        name = signal.Signals(self.signum).name
        if checkpoint:
            where = f"checkpoint {checkpoint} written; rerun with resume=true to continue"
        else:
            where = "no checkpoint written (callbacks.interrupt_checkpoint is off)"
        super().__init__(
            f"training interrupted by {name} in epoch {self.epoch} at step {self.global_step}: {where}"
        )


def _one_line(exc: BaseException) -> str | None:
    """The one-line report of ``exc``, or None for an error that keeps its traceback (a bug)."""
    from hydra.errors import CompactHydraException

    cause = exc.__cause__
    if isinstance(exc, CompactHydraException) and isinstance(cause, (OSError, ValueError)):
        exc = cause  # an error raised inside a config's _target_ (Hydra wraps it)
    if isinstance(exc, OSError):
        return error_line(exc)
    if isinstance(exc, (ValueError, CompactHydraException)):
        return " ".join(str(exc).split())
    return None


def _user_wants_traceback() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(_OURS) != "1"


@contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """Turn the errors of the block into one line on stderr and ``SystemExit`` (see the module doc).

    Used inside a ``@hydra.main`` body (else Hydra adds an "Error executing job" line) and by
    :func:`run_hydra_cli` around it (errors before the body: the run directory, overrides).
    """
    try:
        yield
    except TrainingInterrupted as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_status) from None
    except Exception as exc:
        line = None if _user_wants_traceback() else _one_line(exc)
        if line is None:
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        raise SystemExit(1) from None


def run_hydra_cli(prog: str, hydra_main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function as a command; failures become one line and an exit status.

    Parameters
    ----------
    prog : str
        Prefix of the messages (``"cesped.train"``).
    hydra_main : callable
        The decorated function, called without arguments (Hydra reads ``sys.argv``).

    Raises
    ------
    SystemExit
        1 after a one-line report; ``exc.exit_status`` for :class:`TrainingInterrupted`.
    """
    user_full = _user_wants_traceback()
    if not user_full:  # Hydra re-raises instead of printing a traceback itself
        os.environ["HYDRA_FULL_ERROR"] = os.environ[_OURS] = "1"
    try:
        with one_line_errors(prog):
            hydra_main()
    finally:
        if not user_full:
            os.environ.pop("HYDRA_FULL_ERROR", None)
            os.environ.pop(_OURS, None)
