"""Which columns of a RELION particle star are ground truth of the pose.

A prediction star (:meth:`cesped.data.dataset.ParticlesDataset.saveMd`) and an unlabelled entry
(:func:`cesped.data.local.add_local_entry` with ``labelled=False``) keep only the columns that
describe the image, never the pose an earlier refinement found for it.

Example usage
-------------
>>> from cesped.data.columns import prediction_kept_columns
>>> prediction_kept_columns(["rlnImageName", "rlnAngleRot", "rlnDefocusU", "rlnMaxValueProbDistribution"])
['rlnImageName', 'rlnDefocusU']
"""

from __future__ import annotations

__all__ = ["prediction_kept_columns", "is_ground_truth_column"]

# Columns of an entry's star that are ground truth of the pose (or results of the refinement that
# produced it) and so never reach a prediction star: every rlnAngle* (angles, their priors, the
# psi flip ratio), every rlnOrigin* (shifts in Å or px, their priors) and the refinement's
# per-particle outputs. Everything else of the RELION vocabulary (image name, CTF, optics group,
# micrograph, coordinates, random subset, ...) describes the image, not its pose, and is kept so
# that RELION can reconstruct from the prediction star directly. Columns outside the RELION
# vocabulary (no ``rln`` prefix) are dropped: their meaning is unknown.
_GT_PREFIXES = ("rlnAngle", "rlnOrigin")
_GT_REFINEMENT_COLUMNS = frozenset(
    {
        "rlnMaxValueProbDistribution",
        "rlnParticleFigureOfMerit",
        "rlnNrOfSignificantSamples",
        "rlnLogLikeliContribution",
        "rlnNormCorrection",
        "rlnClassNumber",
    }
)


def is_ground_truth_column(name: str) -> bool:
    """Whether column ``name`` is pose ground truth, a refinement result or not RELION's (dropped)."""
    return not name.startswith("rln") or name.startswith(_GT_PREFIXES) or name in _GT_REFINEMENT_COLUMNS


def prediction_kept_columns(columns) -> list[str]:
    """The columns of an entry's particle table that a prediction star keeps (in their order).

    Parameters
    ----------
    columns : iterable of str
        Column names of the ground-truth ``data_particles`` table.

    Returns
    -------
    list of str
        Every ``rln`` column except the pose ground truth (``rlnAngle*``, ``rlnOrigin*``) and the
        refinement's per-particle results (``rlnMaxValueProbDistribution``,
        ``rlnParticleFigureOfMerit``, ``rlnNrOfSignificantSamples``, ``rlnLogLikeliContribution``,
        ``rlnNormCorrection``, ``rlnClassNumber``).
    """
    return [c for c in columns if not is_ground_truth_column(c)]
