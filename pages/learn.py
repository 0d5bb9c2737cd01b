"""Learn: SiPP on a tiny network, step by step, with every number visible."""
from ui.nav import entry
from ui.views.learn import render

entry(render)
