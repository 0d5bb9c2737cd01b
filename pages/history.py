"""Run history: every prune, sweep and retraining run, saved locally; list, filter, reopen, compare, delete."""
from ui.nav import entry
from ui.views.history import render

entry(render)
