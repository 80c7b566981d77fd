"""The evaluation suite at Quantus's breadth (issue 29), one module per family of metrics:
`faithfulness`, `robustness`, `localisation`, `complexity`, `randomisation`, `axiomatic`; `explain`
is what they share: the maps a metric scores, precomputed or from a method re-run on perturbed inputs.
The older metrics (deletion, insertion, ROAD, the cascading sanity check) live in `_src.metrics`."""
