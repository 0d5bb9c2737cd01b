"""Streamlit's own frontend files (its JavaScript, CSS and fonts) served from memory, each in one write.

Why: a fresh server imports torch while the browser fetches about 150 of these files. Streamlit's handler streams
each file through a thread pool in 64 KiB reads, and every step waits for the interpreter lock that the import
holds (up to 5 ms a switch), so the browser's requests queue behind the import and the files it needs for the
first page arrive late. Read once and sent in one write, a file costs the lock a few microseconds. The first
result with the page opened at once, 8 rounds alternated on a 2-core laptop (with ui/preload.py in both): 3.54 s
with Streamlit's handler, 3.26 s with this (median; BENCHMARKS.md).

Only Streamlit's hashed frontend files are served here (``static/{js,css,media}/<name>``, a plain file name, a
file that exists), with the long-lived cache header Streamlit gives them; everything else (pages, HEAD
requests, other paths, a missing file) goes to Streamlit unchanged. At most MAX_BYTES are kept in memory.
"""
from __future__ import annotations

import mimetypes
import os
import re
import threading

from streamlit import config, file_util

NAME = re.compile(r"^static/(js|css|media)/([A-Za-z0-9][A-Za-z0-9._-]*)$")
CACHE_CONTROL = b"public, immutable, max-age=31536000"  # as Streamlit's handler sets for its hashed files
MAX_BYTES = 48 * 2**20  # all of Streamlit's frontend is about 26 MB, of which a page uses 2-3 MB


class StaticFromMemory:
    """ASGI middleware (st.App(middleware=...)): answers GET requests for Streamlit's frontend files from memory."""

    def __init__(self, app, root: str | None = None):
        self.app = app
        self.root = root if root is not None else os.path.join(file_util.get_static_dir(), "static")
        self._files: dict[str, tuple[bytes, list]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def relative(self, path: str) -> str | None:
        """The request path without the server's base URL ("static/js/x.js"), or None when it lies outside it."""
        base = (config.get_option("server.baseUrlPath") or "").strip("/")
        prefix = f"/{base}/" if base else "/"
        return path[len(prefix):] if path.startswith(prefix) else None

    def response(self, rel: str) -> tuple[bytes, list] | None:
        """(body, headers) for a frontend file, or None to leave the request to Streamlit."""
        hit = self._files.get(rel)
        if hit is not None:
            return hit
        m = NAME.match(rel)
        if m is None:
            return None
        path = os.path.join(self.root, m.group(1), m.group(2))
        try:
            with open(path, "rb") as f:
                body = f.read()
        except OSError:  # missing, a folder, unreadable: Streamlit answers (its 404 page or error)
            return None
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        hit = (body, [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode()),
                      (b"cache-control", CACHE_CONTROL)])
        with self._lock:
            if self._bytes + len(body) <= MAX_BYTES and rel not in self._files:
                self._files[rel] = hit
                self._bytes += len(body)
        return hit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") == "GET":
            rel = self.relative(scope.get("path", ""))
            hit = self.response(rel) if rel is not None else None
            if hit is not None:
                await send({"type": "http.response.start", "status": 200, "headers": hit[1]})
                await send({"type": "http.response.body", "body": hit[0]})
                return
        await self.app(scope, receive, send)
