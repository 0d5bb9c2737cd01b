"""Trade-offs: accuracy, error and bound against keep ratio for many methods on one network; prune potential."""
from ui.nav import entry
from ui.views.tradeoffs import render

entry(render)
