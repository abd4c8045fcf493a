"""Evaluation of predicted poses (imported on use; nothing heavy happens at import).

* :mod:`cesped.evaluation.evaluate` -- the per-entry pipeline behind ``cesped.evaluateEntry``,
  a short sequence over the modules below;
* :mod:`cesped.evaluation.entry` -- which entry (directory, star files, symmetry, mask);
* :mod:`cesped.evaluation.predictions` -- validation of prediction files, transplant, errors;
* :mod:`cesped.evaluation.masks` -- mask download and loading;
* :mod:`cesped.evaluation.gt_cache` -- cache of the ground-truth half-maps;
* :mod:`cesped.evaluation.reconstruct` -- the half-maps (native or RELION backend);
* :mod:`cesped.evaluation.scores` -- pose errors, map metrics, the paper's columns;
* :mod:`cesped.evaluation.outputs` -- writing metrics, maps, plots; the summary table;
* :mod:`cesped.evaluation.plot_thread` -- per-particle figures rendered in a background thread;
* :mod:`cesped.evaluation.metrics` -- MAnE/wMAnE, shift RMSE, PCC, hard-shell FSC and resolution;
* :mod:`cesped.evaluation.plots` -- FSC curves, angular-error histogram, central slices;
* :mod:`cesped.evaluation.report` -- the HTML report.
"""
