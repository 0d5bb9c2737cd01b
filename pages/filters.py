"""Filters: whole channels removed, a physically smaller network, measured."""
from ui.nav import entry
from ui.views.filters import render

entry(render)
