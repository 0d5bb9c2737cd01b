"""Empirical sensitivities of every edge over a sample S: the public entry and its engines (core),
and the layer output assembled from the engine's own products (conv_output)."""
