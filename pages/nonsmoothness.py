"""Nonsmoothness: SMP before vs after pruning, propagation through the network, one path's logits."""
from ui.nav import entry
from ui.views.nonsmoothness import render

entry(render)
