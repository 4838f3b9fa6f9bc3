"""``morphnas dashboard RUN [--host 127.0.0.1] [--port 8080]``: optuna-dashboard on the run."""
from __future__ import annotations

import argparse
import sys

from morphnas.search.cli.registry import CLIError, register_command
from morphnas.search.state.rundir import open_run

LOCAL = {"127.0.0.1", "localhost", "::1"}


@register_command("dashboard", position=80)
def add_parser(sub) -> None:
    p = sub.add_parser("dashboard", help="serve optuna-dashboard on a run (study, trials, artifacts)",
                       description="Serve optuna-dashboard on a run's study with its artifact store "
                                   "(architecture drawings, lineage tree, Pareto plot), read-only: requests "
                                   "that would change the study are refused (403). Ctrl-C stops it.")
    p.add_argument("run_dir", metavar="RUN", help="run directory (runs/<name>) or run name")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: only this machine can connect)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--allow-notes", action="store_true",
                   help="let the page edit study and trial notes (everything else stays read-only)")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from morphnas.search.study.dashboard import dashboard_server  # lazy: optuna-dashboard, only this command

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    run_dir = open_run(args.run_dir)
    try:
        server = dashboard_server(run_dir, args.host, args.port, quiet=not args.verbose,
                                  allow_notes=args.allow_notes)
    except OSError as e:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}; "
                       f"pick another --port (0 = any free port)") from None
    if args.host not in LOCAL:
        print(f"warning: the dashboard has no login; {args.host} exposes the run's study (read-only"
              f"{', notes editable' if args.allow_notes else ''}) to the network", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"optuna-dashboard for {run_dir.root} at http://{host}:{server.server_port}/dashboard "
          f"(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped")
    finally:
        server.server_close()
    return 0
