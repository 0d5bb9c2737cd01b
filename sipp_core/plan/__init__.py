"""From sensitivities to a pruned copy: the eps/delta bounds and |S| (bounds), per-layer budgets
(allocate), which edges stay and with what values (sparsify), the baselines (baselines), one plan
for every method (planner), the public prune() (pruning), and what a pruned network measures
(measure: layer errors; sparse_speed: whether sparsity makes it faster)."""
