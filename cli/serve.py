"""`selfcorrect serve`: the current adapter behind an OpenAI-compatible API, with a live status page, beside the
daemon."""
from __future__ import annotations

from .options import add_command


def add_parser(sub) -> None:
    p = add_command(sub, "serve", run=run,
                    help="serve the current adapter (OpenAI-compatible API and status page) beside the daemon",
                    example="selfcorrect serve --port 8000")
    p.add_argument("--host", default=None, help="address to listen on (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: serve.port, 8000; 0: any free)")


def run(args, ctx) -> int:
    from serve.app import serve

    return serve(ctx.config, ctx.root, ctx.events, host=args.host, port=args.port)
