"""Bring your own keeps its uploads for the session (ui/kept_uploads.py): a page switch empties Streamlit's file
uploaders, and a class that looked at another page came back to an empty page."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from ui import kept_uploads as ku


class Uploaded(SimpleNamespace):
    def getvalue(self):
        return self.data


@pytest.fixture
def session(monkeypatch):
    state = {}
    monkeypatch.setattr(ku.st, "session_state", state)
    return state


def test_an_upload_is_kept_through_a_page_switch_until_its_user_clears_it(session):
    f = ku.kept_upload("weights", Uploaded(name="w.pt", data=b"abc"))
    assert (f.name, f.getvalue(), f.size, f.kept) == ("w.pt", b"abc", 3, False)
    back = ku.kept_upload("weights", None)  # the page left and opened again: the uploader is empty
    assert back.getvalue() == b"abc" and back.kept and back.file_id == f.file_id  # the same file for the checks
    assert ku.kept_upload("npz", None) is None  # nothing kept in another slot
    ku.kept_upload("weights", Uploaded(name="v.pt", data=b"xyz"))  # another file replaces it
    assert ku.kept_upload("weights", None).name == "v.pt"
    session["byo_model_file"] = Uploaded(name="v.pt", data=b"xyz")
    ku.forget_on_clear("weights", "byo_model_file")  # a change that still holds a file: kept
    assert ku.kept_upload("weights", None) is not None
    session["byo_model_file"] = None
    ku.forget_on_clear("weights", "byo_model_file")  # its user cleared the uploader (✕): the kept file goes
    assert ku.kept_upload("weights", None) is None
    ku.kept_upload("npz", Uploaded(name="d.npz", data=b"1"))
    ku.forget("npz")  # the page's Remove button
    assert ku.kept_upload("npz", None) is None
