"""`python -m sandbox serve|seed`: the local stand-in for every outside service."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from sandbox.config import SandboxConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the Notion, Gemini, Kling and ElevenLabs APIs locally")
    serve.add_argument("--state", required=True, type=Path, help="folder for the sandbox's persistent state")
    serve.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--latency-scale", type=float, help="real seconds x scale (default 1/60)")
    serve.add_argument("--cheap-media", action="store_true", help="tiny frames and short audio")
    serve.add_argument("--notion-rate", type=float, help="Notion requests/s on average (default 3)")

    seed = sub.add_parser("seed", help="create a channel database and sample projects through the API")
    seed.add_argument("--state", required=True, type=Path)
    seed.add_argument("--channel", default="nature")
    seed.add_argument("--projects", type=int, default=1)
    seed.add_argument("--scenes", type=int, default=4)
    seed.add_argument("--url", help="the running sandbox's URL (default: from STATE/server.json)")
    seed.add_argument("--queued", action="store_true", help="sample projects start Queued instead of Draft")
    seed.add_argument("--youtube", action="store_true", help="the channel publishes to the sandbox's YouTube")
    seed.add_argument(
        "--webhook-url",
        help="send Notion webhooks to this URL (a daemon's http://HOST:HTTP_PORT/notion/webhook); "
        "daemon.env gets NOTION_WEBHOOKS=true and NOTION_WEBHOOK_SECRET (the subscription's token)",
    )
    seed.add_argument(
        "--status-type",
        choices=("select", "status"),
        default="select",
        help="Status as a select (default) or a Notion status property (its options made by the operator)",
    )

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    from sandbox.seed import seed_command

    return int(seed_command(args))


def _serve(args: argparse.Namespace) -> int:
    from sandbox.server import start

    config = SandboxConfig.load(args.state / "config.json")
    if args.latency_scale is not None:
        config.latency_scale = args.latency_scale
    if args.cheap_media:
        config.cheap_media = True
    if args.notion_rate is not None:
        config.notion_rate = args.notion_rate
    app, server = start(args.state, args.host, args.port, config)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"event": "ready", "url": app.base_url}), flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        app.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
