"""One request through a WSGI app in-process (optuna-dashboard's app, in tests)."""
from __future__ import annotations

import io
from wsgiref.util import setup_testing_defaults


def call(app, path: str) -> tuple[str, dict[str, str], bytes]:
    """One GET through the WSGI app in-process (no socket)."""
    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"], _, environ["QUERY_STRING"] = path.partition("?")
    environ["wsgi.input"] = io.BytesIO(b"")
    got: dict = {}

    def start_response(status, headers, exc_info=None):
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body
