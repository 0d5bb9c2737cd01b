"""Nonsmoothness along straight input paths: the paths (paths), peaks and SMP of one signal (peaks),
the propagation rules (rules), the one batched sweep over a network (sweep), and the public records
and entry points (core)."""
