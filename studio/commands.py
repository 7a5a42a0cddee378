"""`notagen studio` (and `python launch.py`): start the studio, by default on 127.0.0.1 only.

A public link (`--share`) or an address other than this computer's needs a login;
without `--auth` a strong password is generated and printed.
"""
from __future__ import annotations

import secrets
import sys
from pathlib import Path

from pipelines.fields import MAX_SCORE_MB

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers):
    p = subparsers.add_parser("studio", help="start the Gradio studio")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="open a temporary public link (a login is required)")
    p.add_argument("--auth", help="USER:PASS login; with --share and no --auth a strong password is generated")
    p.add_argument("--workspace", default="workspace", type=Path, help="folder that holds all studio data")
    p.add_argument("--max-upload-mb", type=int, default=MAX_SCORE_MB,
                   help=f"largest file a visitor may upload (MB; default {MAX_SCORE_MB}, ample for a score)")
    p.set_defaults(func=run_studio)


def parse_auth(value: str | None, share: bool) -> tuple[str, str] | None:
    """USER:PASS, or a generated login when the studio is reachable by others (printed once)."""
    if value:
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise SystemExit("--auth must be USER:PASS")
        return user, password
    if share:
        password = secrets.token_urlsafe(18)
        print(f"Login: user 'studio', password '{password}'", file=sys.stderr)
        return "studio", password
    return None


def run_studio(args) -> int:
    from studio.app import StudioOptions, launch_studio

    exposed = args.share or args.host not in LOOPBACK
    if args.max_upload_mb < 1:
        raise SystemExit("--max-upload-mb must be at least 1")
    options = StudioOptions(workspace=args.workspace, host=args.host, port=args.port, share=args.share,
                            auth=parse_auth(args.auth, exposed), max_upload_mb=args.max_upload_mb)
    launch_studio(options)
    return 0
