"""Streamlit's frontend files served from memory (ui/static_files.py): the same bytes and cache header as
Streamlit's own handler, and every other request left to Streamlit, on files the test writes."""
from __future__ import annotations

import asyncio
import os

import pytest
from streamlit import config

from ui import static_files
from ui.static_files import StaticFromMemory


def _call(mw, path: str, method: str = "GET"):
    """Run one request through the middleware: (status, headers, body, whether Streamlit got it)."""
    sent, passed = [], []

    async def app(scope, receive, send):
        passed.append(scope["path"])
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"streamlit"})

    async def send(msg):
        sent.append(msg)

    async def receive():
        return {"type": "http.request", "body": b""}

    mw.app = app
    asyncio.run(mw({"type": "http", "method": method, "path": path}, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"], bool(passed)


@pytest.fixture
def frontend(tmp_path):
    (tmp_path / "js").mkdir()
    (tmp_path / "css").mkdir()
    (tmp_path / "js" / "Metric.abc123.js").write_bytes(b"export const m = 1;")
    (tmp_path / "css" / "index.def.css").write_text("body{}")
    (tmp_path / "js" / "folder.js").mkdir()
    (tmp_path.parent / "secret.txt").write_text("no")
    return StaticFromMemory(None, root=str(tmp_path))


def test_a_frontend_file_comes_from_memory_with_streamlits_cache_header(frontend):
    status, headers, body, passed = _call(frontend, "/static/js/Metric.abc123.js")
    assert (status, body, passed) == (200, b"export const m = 1;", False)
    assert headers[b"cache-control"] == b"public, immutable, max-age=31536000"
    assert headers[b"content-type"].startswith(b"text/javascript") and headers[b"content-length"] == b"19"
    assert _call(frontend, "/static/css/index.def.css")[1][b"content-type"] == b"text/css; charset=utf-8"
    os.remove(os.path.join(frontend.root, "js", "Metric.abc123.js"))
    assert _call(frontend, "/static/js/Metric.abc123.js")[2] == b"export const m = 1;"  # read once, kept


@pytest.mark.parametrize("path, method", [
    ("/static/js/missing.js", "GET"),          # no such file: Streamlit's answer
    ("/static/js/folder.js", "GET"),           # a folder
    ("/static/js/../../secret.txt", "GET"),    # not a plain file name
    ("/static/js/%2e%2e/secret.txt", "GET"),
    ("/static/other/Metric.abc123.js", "GET"),  # not a frontend folder
    ("/", "GET"),                               # the page itself
    ("/static/js/Metric.abc123.js", "HEAD"),
    ("/static/js/Metric.abc123.js", "POST"),
])
def test_everything_else_goes_to_streamlit(frontend, path, method):
    status, _, body, passed = _call(frontend, path, method)
    assert passed and (status, body) == (404, b"streamlit")


def test_a_base_url_path_is_respected(frontend, monkeypatch):
    monkeypatch.setattr(config, "get_option", lambda name: "/studio/" if name == "server.baseUrlPath" else None)
    assert _call(frontend, "/studio/static/js/Metric.abc123.js")[0] == 200
    assert _call(frontend, "/static/js/Metric.abc123.js")[3]  # outside the base URL: Streamlit's


def test_memory_is_bounded(frontend, monkeypatch):
    monkeypatch.setattr(static_files, "MAX_BYTES", 10)
    assert _call(frontend, "/static/js/Metric.abc123.js")[0] == 200  # served, but not kept
    assert frontend._files == {} and frontend._bytes == 0


def test_streamlits_own_frontend_is_found():
    """The real folder: Streamlit's page asks for its entry script under static/js; it is served from memory."""
    mw = StaticFromMemory(None)
    entry = next(n for n in os.listdir(os.path.join(mw.root, "js")) if n.startswith("index.") and n.endswith(".js"))
    status, headers, body, passed = _call(mw, f"/static/js/{entry}")
    assert status == 200 and not passed and len(body) > 10_000
