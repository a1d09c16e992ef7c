"""`roomlogs serve | token` (also `python -m service`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .settings import FIELDS, Settings, SettingsError


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the gateway (settings from the environment or flags)")
    for spec in FIELDS:
        p.add_argument(
            spec.flag, dest=spec.attr, metavar=spec.env, help=f"{spec.help} [{spec.env}]"
        )


def _token_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="mint a token from JWT_SECRET (HS algorithms)")
    p.add_argument("--rooms", default="*", help="comma-separated rooms to read, or * (default)")
    p.add_argument("--publish", default="", help="comma-separated rooms to publish to, or *")
    p.add_argument("--ttl", type=float, default=3600, help="seconds until it expires (3600)")
    p.add_argument("--sub", default=None, help="subject claim")
    p.add_argument("--secret", default=None, help="secret to sign with (default: JWT_SECRET)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomlogs", description=__doc__)
    parser.add_argument("--version", action="version", version=f"roomlogs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _token_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            overrides = {spec.attr: getattr(args, spec.attr) for spec in FIELDS}
            settings = Settings.from_env(**overrides)
            from .server import serve

            serve(settings)
            return 0
        if args.command == "token":
            return _token(args)
    except SettingsError as exc:
        print(f"roomlogs: {exc}", file=sys.stderr)
        return 2
    return 2


def _token(args: argparse.Namespace) -> int:
    from .auth import mint_token

    settings = Settings.from_env()
    secret = args.secret or settings.jwt_secret
    if not secret:
        raise SettingsError("JWT_SECRET", "`roomlogs token` signs with JWT_SECRET: set it")
    algorithm = next((a for a in settings.jwt_algorithms if a.startswith("HS")), None)
    if algorithm is None:
        raise SettingsError("JWT_ALGORITHMS", "`roomlogs token` needs an HS algorithm allowed")
    split = [r.strip() for r in args.rooms.split(",") if r.strip()]
    publish = [r.strip() for r in args.publish.split(",") if r.strip()]
    print(
        mint_token(
            secret,
            rooms=split,
            publish=publish,
            ttl=args.ttl,
            sub=args.sub,
            algorithm=algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
