"""Sensitivity: how SiPP scores every edge, with the formula filled in for one edge."""
from ui.nav import entry
from ui.view_sensitivity import render

entry(render)
