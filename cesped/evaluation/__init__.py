"""Evaluation of predicted poses (imported on use; nothing heavy happens at import).

* :mod:`cesped.evaluation.metrics` -- MAnE/wMAnE, shift RMSE, PCC, hard-shell FSC and resolution;
* :mod:`cesped.evaluation.evaluate` -- the per-entry pipeline behind ``cesped.evaluateEntry``;
* :mod:`cesped.evaluation.plots` -- FSC curves, angular-error histogram, central slices;
* :mod:`cesped.evaluation.report` -- the HTML report.
"""
