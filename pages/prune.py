"""Prune (home): prune a real network and see the guarantee beside reality."""
from ui.nav import entry
from ui.views.prune import render

entry(render)
