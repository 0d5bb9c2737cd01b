"""Reading an upload's bytes (sipp_core.io.uploads)."""
from __future__ import annotations

import io

import pytest

from sipp_core.io.uploads import read_upload


def test_bytes_like_and_binary_files():
    assert read_upload(b"abc", 10) == b"abc"
    assert read_upload(memoryview(bytearray(b"xy")), 10) == b"xy"
    f = io.BytesIO(b"0123456789")
    f.read(4)  # a file already read from: read again from its start
    assert read_upload(f, 100) == b"0123456789"


def test_reads_one_byte_past_the_limit_only():
    assert read_upload(io.BytesIO(b"x" * 1000), 10) == b"x" * 11  # the caller sees len > limit


@pytest.mark.parametrize("bad", [io.StringIO("text"), 3.5, None])
def test_rejects_text_files_and_other_objects(bad):
    with pytest.raises(TypeError, match="binary"):
        read_upload(bad, 10)
