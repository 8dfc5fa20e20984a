"""`multilabelfy-collect`: run the collector (Bottle app on waitress) until SIGTERM/SIGINT.

One command, no subcommands. Imports only Bottle, waitress and the standard library, so
it runs on a small server with `pip install bottle waitress` and this package.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from multilabelfy.collector import clitools, formats
from multilabelfy.collector.clitools import UserError

log = logging.getLogger("multilabelfy.collector")

PROG = "multilabelfy-collect"
DESCRIPTION = """\
Collect annotators' answers: validate each submission against the site's manifest and
the annotator's token, and append it durably (fsync before the answer) to a JSON-lines
store. One line is logged per request; tokens never appear in the log.

manifest.json (SITE_DIR) and tokens.json (PRIVATE_DIR) are re-read whenever they change
on disk, so a new stage (refine) or new annotators need no restart.

Endpoints: POST /api/submissions, GET /api/health, GET /api/progress (admin token),
GET /api/progress/me (the annotator's own). Stop with Ctrl-C or SIGTERM: requests in
flight finish first.

Example:
  multilabelfy-collect --site site --private private --store submissions.jsonl \\
      --host 127.0.0.1 --port 8765 --serve-site"""


def origin(value: str) -> str:
    """An argparse type for --allow-origin: scheme://host[:port] exactly as browsers send it."""
    if value == "null":
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an origin like https://user.github.io")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(
            f"{value!r} has a path; an origin is only scheme://host[:port]: use {parts.scheme}://{parts.netloc}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def port_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0-65535)")
    return number


def build_parser() -> argparse.ArgumentParser:
    # clitools has no public single-command parser yet; these are its conventions.
    parser = clitools.make_command_parser(PROG, DESCRIPTION)
    parser.add_argument("--site", metavar="SITE_DIR", type=Path, required=True,
                        help="the generated site: its manifest.json says which labels each page shows")
    parser.add_argument("--private", metavar="PRIVATE_DIR", type=Path, required=True,
                        help="the private folder with tokens.json (token hashes -> annotator, stage, batch)")
    parser.add_argument("--store", metavar="FILE", type=Path, required=True,
                        help="the JSON-lines file submissions are appended to (created if missing; "
                             "<FILE>.lock is its lock file)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 for every interface (put TLS in front)")
    parser.add_argument("--port", type=port_number, default=8765,
                        help="port to listen on; 0 picks a free one (printed at start-up)")
    parser.add_argument("--serve-site", action="store_true",
                        help="also serve SITE_DIR from the same origin (local use and demos); "
                             "never serves PRIVATE_DIR, the store, hidden files or secrets")
    parser.add_argument("--allow-origin", metavar="URL", type=origin, action="append",
                        help="an origin whose pages may call the API, e.g. https://user.github.io "
                             "(repeatable; 'null' for pages opened from file://)")
    parser.add_argument("--threads", type=clitools.positive_int, default=8,
                        help="worker threads answering requests")
    parser.set_defaults(run=run)
    return parser


def check_inputs(args: argparse.Namespace) -> None:
    """Fail early, naming the file, instead of on the first annotator's request."""
    for option, folder, name, load in (("--site", args.site, formats.MANIFEST_FILE, formats.load_manifest),
                                       ("--private", args.private, formats.TOKENS_FILE, formats.load_tokens)):
        if not folder.is_dir():
            raise UserError(f"{option} {folder} is not a folder")
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path} is missing ({option} must be the folder that holds {name})")
        try:
            load(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path} cannot be read: {exc}") from None
    if not args.store.parent.is_dir():
        raise UserError(f"the folder of --store {args.store} does not exist")
    if args.store.is_dir():
        raise UserError(f"--store {args.store} is a folder; give a file name such as submissions.jsonl")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")


def serve(app: Callable, host: str, port: int, threads: int) -> None:
    """Serve a WSGI app with waitress until SIGTERM/SIGINT; requests in flight finish first."""
    import waitress

    try:
        server = waitress.create_server(app, host=host, port=port, threads=threads,
                                        max_request_body_size=16 * formats.MAX_BODY_BYTES,
                                        ident="multilabelfy-collect", clear_untrusted_proxy_headers=True)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except ValueError as exc:  # waitress: a host it cannot parse or resolve
        raise UserError(f"--host {host!r} is not an address this machine can listen on ({exc})") from None

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # waitress' run() turns this into a clean shutdown

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    shown_host = f"[{host}]" if ":" in host else host
    log.info("listening on http://%s:%s", shown_host, server.effective_port)
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()


def run(args: argparse.Namespace) -> int:
    from multilabelfy.collector.app import CollectorConfig, create_app
    from multilabelfy.collector.store import Store

    check_inputs(args)
    setup_logging()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" chatter
    store = Store(args.store)
    try:
        report = store.open()
    except OSError as exc:
        raise UserError(f"cannot open --store {args.store}: {exc.strerror or exc}") from None
    log.info("store %s: %d records%s%s", args.store, report.records,
             f", {len(report.bad_lines)} damaged lines left in place" if report.bad_lines else "",
             "".join(f", torn last line set aside in {p}" for p in report.torn_files))
    config = CollectorConfig(site_dir=args.site, private_dir=args.private, store_path=args.store,
                             serve_site=args.serve_site, allow_origins=tuple(args.allow_origin or ()))
    try:
        serve(create_app(config, store), args.host, args.port, args.threads)
    finally:
        store.close()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return clitools.run_parser(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
