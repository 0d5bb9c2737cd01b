"""Empirical sensitivities of every edge over a sample S (docs/sipp.md §2).

- api: compute_sensitivities, layer_sensitivity, the forward hooks and the input checks
- reference: the definition as plain, deliberately slow loops (for tests, teaching, benchmarks)
- the engines: linear (Linear layers), conv_direct (small convs, the mean reduction),
  conv_screened (convs, the max reduction), with the screened engine's blocks, keys (the
  candidate search) and precision (the arithmetic of its bounds)
- shared by them: budget (working memory), geometry (a conv's shapes and points), kernels
  (the no-signal rule, signed weights, the max-times product), conv_output (the layer
  output assembled from the engine's own products)
"""
