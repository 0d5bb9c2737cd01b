"""Process-wide settings (sipp_core.runtime)."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from sipp_core import runtime


def test_allocator_settings_once_and_opt_out(monkeypatch):
    monkeypatch.setattr(runtime, "_allocator", None)
    monkeypatch.setenv("SIPP_MALLOC", "default")
    assert runtime.configure_allocator() is False  # left alone on request
    monkeypatch.setattr(runtime, "_allocator", None)
    monkeypatch.delenv("SIPP_MALLOC")
    first = runtime.configure_allocator()
    glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallopt")
    assert first is glibc
    assert runtime.configure_allocator() is first  # decided once per process


@pytest.mark.parametrize("value, want", [("3", 3), ("0", None), ("x", None)])
def test_torch_threads_from_environment(monkeypatch, value, want):
    monkeypatch.setenv("SIPP_TORCH_THREADS", value)
    default = max(1, min(4, ((__import__("os").cpu_count() or 2) // 2)))
    assert runtime.torch_threads() == (want if want is not None else default)
