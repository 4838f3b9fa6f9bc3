"""One request through a WSGI app in-process (optuna-dashboard's app, in tests)."""
from __future__ import annotations

import io
from wsgiref.util import setup_testing_defaults


def call(app, path: str, method: str = "GET", body: bytes = b"") -> tuple[str, dict[str, str], bytes]:
    """One request (GET unless ``method``) through the WSGI app in-process (no socket)."""
    environ: dict = {}
    setup_testing_defaults(environ)
    environ["REQUEST_METHOD"] = method
    environ["PATH_INFO"], _, environ["QUERY_STRING"] = path.partition("?")
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    if body:
        environ["CONTENT_TYPE"] = "application/json"
    got: dict = {}

    def start_response(status, headers, exc_info=None):
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body
