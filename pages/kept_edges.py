"""Kept edges: which edges survived, per layer, per unit and on the input pixels."""
from ui.nav import entry
from ui.views.kept_edges import render

entry(render)
