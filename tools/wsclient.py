#!/usr/bin/env python3
"""A small WebSocket client for trying the cafe socket by hand.

    wsclient.py 'wss://app.nurcrm.kg/ws/cafe/tables/?token=JWT'
    wsclient.py --unix-socket /home/nur/asgi.sock 'ws://localhost/ws/cafe/tables/?token=JWT'
    wsclient.py --send '{"action": "ping"}' --count 2 URL

Prints every frame it receives as one line of JSON, and the close code when the server closes.
"""

import argparse
import asyncio
import json
import ssl
import sys
from urllib.parse import urlsplit

from websockets.asyncio.client import connect, unix_connect
from websockets.exceptions import ConnectionClosed


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="ws:// or wss:// URL, e.g. wss://app.nurcrm.kg/ws/cafe/tables/?token=JWT")
    parser.add_argument("--unix-socket", help="connect through this unix socket instead of the URL's host")
    parser.add_argument("--origin", help="Origin header (default: https://<host of the URL>)")
    parser.add_argument("--cafile", help="trust this CA/certificate file (for a self-signed test certificate)")
    parser.add_argument(
        "--send", action="append", default=[], help="a text frame to send after connecting (repeatable)"
    )
    parser.add_argument("--count", type=int, default=0, help="stop after this many frames (0: run until closed)")
    parser.add_argument(
        "--timeout", type=float, default=0, help="stop after this many seconds without a frame (0: never)"
    )
    return parser.parse_args(argv)


async def run(args):
    host = urlsplit(args.url).hostname
    origin = args.origin or f"https://{host}"
    if args.unix_socket:
        client = unix_connect(args.unix_socket, args.url, origin=origin)
    else:
        tls = ssl.create_default_context(cafile=args.cafile) if args.url.startswith("wss:") else None
        client = connect(args.url, origin=origin, ssl=tls)
    received = 0
    async with client as ws:
        for frame in args.send:
            await ws.send(frame)
        try:
            while not args.count or received < args.count:
                frame = await (asyncio.wait_for(ws.recv(), args.timeout) if args.timeout else ws.recv())
                print(frame if isinstance(frame, str) else json.dumps({"binary": frame.hex()}), flush=True)
                received += 1
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            print(json.dumps({"closed": code, "reason": closed.rcvd.reason if closed.rcvd else ""}), flush=True)
            return 0 if code in (1000, None) else 1
        except TimeoutError:
            print(json.dumps({"timeout": args.timeout}), file=sys.stderr)
            return 2
    return 0


def main(argv=None):
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
