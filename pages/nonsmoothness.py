"""Nonsmoothness: SMP before vs after pruning, propagation through the network, one path's logits."""
from ui.nav import entry
from ui.view_nonsmoothness import render

entry(render)
