"""Sensitivity: how SiPP scores every edge, with the formula filled in for one edge."""
from ui.nav import entry
from ui.views.sensitivity import render

entry(render)
