"""`notagen studio` (and `python launch.py`): start the studio, by default on 127.0.0.1 only."""
from __future__ import annotations

import secrets
import sys


def register(subparsers):
    p = subparsers.add_parser("studio", help="start the Gradio studio")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="open a temporary public link (a login is required)")
    p.add_argument("--auth", help="USER:PASS login; with --share and no --auth a strong password is generated")
    p.add_argument("--workspace", default="workspace", help="folder that holds all studio data")
    p.set_defaults(func=run_studio)


def parse_auth(value: str | None, share: bool) -> tuple[str, str] | None:
    if value:
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise SystemExit("--auth must be USER:PASS")
        return user, password
    if share:
        password = secrets.token_urlsafe(18)
        print(f"Public link login: user 'studio', password '{password}'", file=sys.stderr)
        return "studio", password
    return None


def run_studio(args) -> int:
    from .app import build_app

    auth = parse_auth(args.auth, args.share)
    app = build_app()
    app.queue(api_open=False)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
               show_error=False, enable_monitoring=False, max_file_size="200mb")
    return 0
