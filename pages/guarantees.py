"""Guarantees: the bound beside the measured error, per layer and per row, and as eps moves."""
from ui.nav import entry
from ui.views.guarantees import render

entry(render)
