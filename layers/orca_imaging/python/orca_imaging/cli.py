"""`orca-imaging`: the local stack and the tools around it.

orca-imaging serve            the whole pipeline on loopback (what `make run` runs)
orca-imaging token ...        a bearer token from the local issuer
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from orca_imaging.auth import Role

DEFAULT_STATE_DIR = Path(".orca-local")


def _serve(args: argparse.Namespace) -> int:
    from orca_imaging.local.stack import LocalStack, LocalStackConfig

    started = time.monotonic()
    stack = LocalStack(
        LocalStackConfig(state_dir=args.state_dir, api_port=args.port, moto_port=args.moto_port)
    ).start()
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"Orca imaging local stack is up in {time.monotonic() - started:.1f} s", flush=True)
    for name, url in stack.urls():
        print(f"  {name:<22} {url}", flush=True)
    print(
        "  Get a token:           orca-imaging token --role doctor --clinic demo\n"
        "  Stop:                  Ctrl-C",
        flush=True,
    )
    stopping.wait()
    print("stopping...", flush=True)
    stack.stop()
    print("stopped", flush=True)
    return 0


def _token(args: argparse.Namespace) -> int:
    from orca_imaging.local.jwt_issuer import LocalIssuer

    issuer = LocalIssuer(args.state_dir)
    print(issuer.mint(clinic_id=args.clinic, roles=[Role(r) for r in args.role], user_id=args.user))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orca-imaging", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="local keys and state")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the embedded local stack until Ctrl-C")
    serve.add_argument("--port", type=int, default=8080, help="API and web port on 127.0.0.1")
    serve.add_argument("--moto-port", type=int, default=5000, help="AWS endpoint port on 127.0.0.1")
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="mint a bearer token from the local issuer")
    token.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    token.add_argument("--clinic", required=True)
    token.add_argument("--user", default=None, help="the user id (sub); random if omitted")
    token.set_defaults(run=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
