"""Retraining: prune-retrain cascades and training in isolation (lottery tickets) against a random mask."""
from ui.nav import entry
from ui.views.retrain import render

entry(render)
