"""optuna-dashboard on a run: its storage with the run's artifact store wired in.

The dashboard reads the same SQLite file the driver writes; SQLite serialises the two (the
storage waits up to a minute for a lock, see :func:`~.leaderboard.open_storage`).

It is read-only: optuna-dashboard's own API can create, rename and delete studies, tell trials,
upload artifacts and write notes, and a run's study is written by ``search``/``resume`` alone. So
every request but GET, HEAD and OPTIONS is answered 403, except (with ``allow_notes``) the PUTs
that edit a study's or a trial's note.
"""
from __future__ import annotations

import json
import re
import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna_dashboard import wsgi

from morphnas.search.state.rundir import RunDir, storage_url, study_name
from morphnas.search.study.storage import load_study, open_storage, quiet_optuna


def dashboard_app(run: RunDir, verbose: bool | None = None, allow_notes: bool = False):
    """The dashboard's WSGI app for ``run`` (raises ``RunDirError`` if the run has no study yet).

    Optuna's INFO lines and the importance ``UserWarning``s the dashboard triggers are silenced
    unless ``verbose`` (see :func:`~.storage.quiet_optuna`)."""
    quiet_optuna(verbose)
    url = storage_url(run)
    storage = open_storage(url, create=False)
    load_study(storage, study_name(run), url)  # fail now, with our message, rather than show an empty page
    store = optuna.artifacts.FileSystemArtifactStore(str(run.artifacts)) if run.artifacts.is_dir() else None
    return read_only(wsgi(storage, artifact_store=store), allow_notes=allow_notes)


_READ = frozenset({"GET", "HEAD", "OPTIONS"})
_NOTE = re.compile(r"^/api/studies/\d+(/\d+)?/note$")


def read_only(app, allow_notes: bool = False):
    """``app`` answering 403 to every request that would change the study (see the module doc)."""

    def guarded(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "")
        if method in _READ or (allow_notes and method == "PUT" and _NOTE.match(path)):
            return app(environ, start_response)
        hint = "" if allow_notes or not _NOTE.match(path) else " (start it with --allow-notes to edit notes)"
        body = json.dumps({"reason": f"morphnas dashboard is read-only: {method} {path} refused; a run's study is "
                                     f"written by morphnas search/resume only{hint}"}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return guarded


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # The page fetches several API routes at once; one thread per request keeps it responsive.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


def dashboard_server(run: RunDir, host: str = "127.0.0.1", port: int = 8080, quiet: bool = True,
                     allow_notes: bool = False) -> WSGIServer:
    """A bound (not yet serving) HTTP server; ``port=0`` picks a free port (see ``server.server_port``)."""
    return make_server(host, port, dashboard_app(run, verbose=None if quiet else True, allow_notes=allow_notes),
                       server_class=_ThreadingServer,
                       handler_class=_QuietHandler if quiet else WSGIRequestHandler)
