"""Keep every test away from the user's real folders: run history, checkpoint cache, data."""
import os
import tempfile

import pytest

# Set at import time (before any test module imports the app or the engine) so that
# subprocesses started by tests, such as the browser test's `streamlit run`, inherit them.
_ROOT = tempfile.mkdtemp(prefix="sipp-tests-")
for var, sub in (("SIPP_DATA_HOME", "data-home"), ("SIPP_CACHE_DIR", "cache")):
    os.environ.setdefault(var, os.path.join(_ROOT, sub))


@pytest.fixture(scope="session")
def test_root():
    return _ROOT
