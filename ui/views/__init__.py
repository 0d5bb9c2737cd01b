"""One module per page, each with a ``render()`` that a thin ``pages/<name>.py`` calls.

No view imports another view (tests/test_architecture.py checks it): what several pages share lives
in ``ui.guard`` (the settings check, sensitivities and report, errors shown with their fix),
``ui.results`` (result displays) and ``ui.run_store`` (the run history).
"""
