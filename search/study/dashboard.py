"""optuna-dashboard on a run: its storage with the run's artifact store wired in.

The dashboard reads the same SQLite file the driver writes; SQLite serialises the two (the
storage waits up to a minute for a lock, see :func:`~.leaderboard.open_storage`).
"""
from __future__ import annotations

import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna_dashboard import wsgi

from morphnas.search.state.rundir import RunDir, storage_url, study_name
from morphnas.search.study.storage import load_study, open_storage, quiet_optuna


def dashboard_app(run: RunDir, verbose: bool | None = None):
    """The dashboard's WSGI app for ``run`` (raises ``RunDirError`` if the run has no study yet).

    Optuna's INFO lines and the importance ``UserWarning``s the dashboard triggers are silenced
    unless ``verbose`` (see :func:`~.storage.quiet_optuna`)."""
    quiet_optuna(verbose)
    url = storage_url(run)
    storage = open_storage(url, create=False)
    load_study(storage, study_name(run), url)  # fail now, with our message, rather than show an empty page
    store = optuna.artifacts.FileSystemArtifactStore(str(run.artifacts)) if run.artifacts.is_dir() else None
    return wsgi(storage, artifact_store=store)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # The page fetches several API routes at once; one thread per request keeps it responsive.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


def dashboard_server(run: RunDir, host: str = "127.0.0.1", port: int = 8080, quiet: bool = True) -> WSGIServer:
    """A bound (not yet serving) HTTP server; ``port=0`` picks a free port (see ``server.server_port``)."""
    return make_server(host, port, dashboard_app(run, verbose=None if quiet else True), server_class=_ThreadingServer,
                       handler_class=_QuietHandler if quiet else WSGIRequestHandler)
