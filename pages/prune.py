"""Prune (home): prune a real network and see the guarantee beside reality."""
from ui.nav import entry
from ui.view_prune import render

entry(render)
