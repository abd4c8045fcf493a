"""The per-particle figures, rendered in a background thread while the maps are built."""

from __future__ import annotations

__all__ = ["BackgroundPlots", "render_particle_figures"]


class BackgroundPlots:
    """Renders the per-particle figures to PNG bytes in a thread (nothing is written to disk).

    Started before the reconstruction, whose compiled and torch kernels release the GIL, so
    the figures cost little extra time. :meth:`result` waits and re-raises any error; nothing
    else may use matplotlib until it has returned (matplotlib is not thread-safe).

    Parameters
    ----------
    per_particle : dict
        As returned by :func:`cesped.evaluation.predictions.per_particle`.
    """

    def __init__(self, per_particle: dict):
        import threading

        self._figures = None
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(per_particle,), name="cesped-plots", daemon=True
        )
        self._thread.start()

    def _run(self, per_particle: dict) -> None:
        try:
            self._figures = render_particle_figures(per_particle)
        except BaseException as e:  # handed to the caller by result()
            self._error = e

    def join(self) -> None:
        """Wait for the thread (errors stay with :meth:`result`)."""
        self._thread.join()

    def result(self) -> list[tuple[str, str, bytes]]:
        """(caption, file name, PNG bytes) of each figure, in the report's order."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._figures


def render_particle_figures(per_particle: dict) -> list[tuple[str, str, bytes]]:
    """Angular-error histogram, orientation coverage and confidence-vs-error plots, in memory."""
    import io

    from cesped.evaluation import plots as pl
    from cesped.evaluation.report import render_particle_plots

    buf = io.BytesIO()
    pl.plot_angular_errors(buf, per_particle["errors_deg"])
    hist = ("Histogram of symmetry-aware angular errors (both half-sets).", "angular_errors.png")
    return [(*hist, buf.getvalue()), *render_particle_plots(per_particle)]
