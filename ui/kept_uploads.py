"""A page's uploads kept for the session: Streamlit forgets what a file uploader holds as soon as its page is left,
so a class that looks at another page and comes back would have to upload its network and data again.

    f = kept_upload("model", st.file_uploader(..., key="byo_model_file", on_change=forget_on_clear,
                                              args=("model", "byo_model_file")))

While the uploader holds a file, that file is kept (replacing any kept before); while it is empty because the page
was left and opened again, the kept file stands in for it; when its user clears it (the uploader's ✕), the kept
file goes too. A kept file reads as an uploaded one does (name, size, file_id, getvalue()).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import streamlit as st

KEPT = "_kept_uploads"  # session_state: {slot: KeptFile}


@dataclass(frozen=True)
class KeptFile:
    name: str
    data: bytes
    file_id: str  # the content's sha256: the same file uploaded again is the same file
    kept: bool = False  # True when it stands in for an uploader left empty by a page switch

    @property
    def size(self) -> int:
        return len(self.data)

    def getvalue(self) -> bytes:
        return self.data


def kept_upload(slot: str, uploaded) -> KeptFile | None:
    """The uploader's file (kept for the session), or the one kept earlier when the uploader is empty."""
    kept = st.session_state.setdefault(KEPT, {})
    if uploaded is not None:
        data = uploaded.getvalue()
        f = KeptFile(uploaded.name, data, hashlib.sha256(data).hexdigest())
        kept[slot] = f
        return f
    f = kept.get(slot)
    return None if f is None else KeptFile(f.name, f.data, f.file_id, kept=True)


def forget_on_clear(slot: str, key: str) -> None:
    """An uploader's on_change: its user cleared it, so its kept file goes too."""
    if st.session_state.get(key) is None:
        st.session_state.setdefault(KEPT, {}).pop(slot, None)


def forget(slot: str) -> None:
    st.session_state.setdefault(KEPT, {}).pop(slot, None)
