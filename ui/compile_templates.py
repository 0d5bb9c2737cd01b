"""`make run`'s build step: compile the default page's chart templates (ui.charts.compiled) before the server starts.

    python -m ui.compile_templates        # does nothing when the file is already this code's

It runs the app's default page once, as a first visitor's browser would (Streamlit's AppTest, no background work),
and writes the templates it made. Where that fails (a read-only checkout, a full disk), it says so in a line and
exits 0: the app starts all the same and builds its templates as it goes.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui.charts import compiled, figure

ROOT = Path(__file__).resolve().parent.parent


def default_page_specs() -> dict[tuple, dict]:
    """The templates the default page makes (every one built: the file on disk is not read)."""
    compiled.forget(ignore_file=True)
    at = AppTest.from_file(str(ROOT / "studio.py"), default_timeout=300)
    at.run()
    if at.exception:
        raise RuntimeError(f"the default page stopped: {at.exception[0].message}")
    return figure.made_specs()


def main() -> int:
    if compiled.up_to_date():
        return 0
    os.environ.setdefault("SIPP_PREFETCH", "0")  # the page alone: no reports computed ahead
    # A page run outside a server: Streamlit warns that nothing is there to show it, which is the point here
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("streamlit."):
            logging.getLogger(name).setLevel(logging.ERROR)
    if not compiled.writable():  # say so at once, before running the page (a read-only checkout)
        print(f"Chart templates not compiled ({compiled.PATH.parent} cannot be written); the first page builds them.",
              file=sys.stderr)
        return 0
    try:
        code = compiled.fingerprint()  # before the page runs: an edit meanwhile leaves the file stale, not wrong
        n = compiled.write(default_page_specs(), code=code)
    except Exception as exc:  # noqa: BLE001 - the app starts all the same, building its templates as it goes
        print(f"Chart templates not compiled ({type(exc).__name__}: {exc}); the first page builds them.",
              file=sys.stderr)
        return 0
    print(f"Compiled {n} chart templates into {compiled.PATH}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
