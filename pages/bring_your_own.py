"""Bring your own: upload weights, an exported program or a .npz data set, checked safely, then prune it."""
from ui.nav import entry
from ui.views.bring_your_own import render

entry(render)
