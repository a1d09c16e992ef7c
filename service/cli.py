"""`roomlogs serve | token | publish | tail` (also `python -m service`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from . import __version__
from .logs import LEVELS
from .settings import FIELDS, Settings, SettingsError

EPILOG = """examples:
  roomlogs serve
  export ROOMLOGS_TOKEN=$(roomlogs token --rooms demo --publish demo)
  roomlogs publish demo "hello" --level warn
  make 2>&1 | roomlogs publish demo --agent build
  roomlogs tail demo

`roomlogs COMMAND --help` tells the options of each."""

if TYPE_CHECKING:
    from .publisher import Publisher

TOKEN_HELP = "give a token with --token or ROOMLOGS_TOKEN (`roomlogs token` mints one)"  # noqa: S105


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the gateway (settings from the environment or flags); with no key: "
        "a kept development secret, on 127.0.0.1",
    )
    for spec in FIELDS:
        p.add_argument(
            spec.flag, dest=spec.attr, metavar=spec.env, help=f"{spec.help} [{spec.env}]"
        )


def _token_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "token", help="mint a token from JWT_SECRET (HS algorithms), else the development secret"
    )
    p.add_argument("--rooms", default="*", help="comma-separated rooms to read, or * (default)")
    p.add_argument("--publish", default="", help="comma-separated rooms to publish to, or *")
    p.add_argument(
        "--ttl", type=_positive, default=3600, help="seconds until it expires (3600; > 0)"
    )
    p.add_argument("--sub", default=None, help="subject claim")
    p.add_argument("--secret", default=None, help="secret to sign with (default: JWT_SECRET)")


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help="service URL (default http://localhost:8080)")
    p.add_argument("--token", default=None, help="token (default: ROOMLOGS_TOKEN, else minted)")


def _publish_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "publish",
        help="publish one log, or each line of standard input, to Redis (REDIS_URL) or over HTTP",
    )
    p.add_argument("room")
    p.add_argument(
        "message", nargs="?", default=None, help="the message (none or -: each stdin line is one)"
    )
    p.add_argument("--agent", default="system", help="agentType (system)")
    p.add_argument("--level", default="info", choices=LEVELS, help="the level (info)")
    p.add_argument("--metadata", default="{}", help="a JSON object")
    p.add_argument("--redis-url", default=None, help="publish to Redis (default: REDIS_URL)")
    _client_flags(p)


def _tail_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tail", help="follow rooms in the terminal (several on one stream), resuming after outages"
    )
    p.add_argument("rooms", nargs="+", metavar="room")
    p.add_argument("--history", type=int, default=20, help="logs to show first, per room (20)")
    p.add_argument("--level", default=None, choices=LEVELS, help="only this level and above")
    p.add_argument("--agent", default=None, help="only this agentType")
    p.add_argument("--count", type=int, default=None, help="exit after this many logs")
    _client_flags(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roomlogs",
        description="Streams the live logs of rooms to browsers over Server-Sent Events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"roomlogs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    _token_parser(sub)
    _publish_parser(sub)
    _tail_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "serve":
            overrides = {spec.attr: getattr(args, spec.attr) for spec in FIELDS}
            settings = Settings.from_env(**overrides)
            from .server import StartupError, serve

            try:
                serve(settings)
            except StartupError as exc:
                print(f"roomlogs: {exc}", file=sys.stderr)
                return 2
            return 0
        if args.command == "token":
            return _token(args)
        if args.command == "publish":
            return asyncio.run(_publish(args))
        assert args.command == "tail"  # `required=True`: argparse refused anything else
        return _tail(args)
    except SettingsError as exc:
        print(f"roomlogs: {exc}", file=sys.stderr)
        return 2


def _client_token(args: argparse.Namespace, room: str | list[str]) -> str | None:
    """--token, else ROOMLOGS_TOKEN, else one minted from JWT_SECRET for this room."""
    if args.token or os.environ.get("ROOMLOGS_TOKEN"):
        return str(args.token or os.environ["ROOMLOGS_TOKEN"])
    settings = Settings.from_env()
    secret = settings.jwt_secret or _dev_secret()
    if secret:
        from .auth import mint_token

        rooms = [room] if isinstance(room, str) else room
        return mint_token(secret, rooms=rooms, publish=rooms, ttl=600, sub="cli")
    return None


def _dev_secret() -> str | None:
    from .devsecret import read_dev_secret

    return read_dev_secret()


async def _publish(args: argparse.Namespace) -> int:
    from .publisher import Publisher, PublishError

    try:
        metadata = orjson.loads(args.metadata)
    except orjson.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict):
        print("roomlogs publish: --metadata must be a JSON object", file=sys.stderr)
        return 2
    redis_url = args.redis_url or (os.environ.get("REDIS_URL") if not args.url else None)
    if redis_url:
        settings = Settings.from_env(redis_url=redis_url)
        publisher = Publisher(
            redis_url=redis_url,
            history_max=settings.history_max,
            history_ttl=settings.history_ttl,
            max_message_bytes=settings.max_message_bytes,
            redis_options=settings.redis_options,
        )
    else:
        url = args.url or "http://localhost:8080"
        publisher = Publisher(url=url, token=_client_token(args, args.room))
    try:
        async with publisher:
            if args.message not in (None, "-"):
                print(await _emit(publisher, args, args.message, metadata))
                return 0
            for line in sys.stdin:  # one log a line, as it comes (`make | roomlogs publish r`)
                if line.strip():
                    print(await _emit(publisher, args, line.rstrip("\r\n"), metadata), flush=True)
    except (PublishError, ValueError) as exc:
        hint = f" ({TOKEN_HELP})" if str(exc).startswith("401") else ""
        print(f"roomlogs publish: not stored: {exc}{hint}", file=sys.stderr)
        return 1
    return 0


async def _emit(
    publisher: Publisher, args: argparse.Namespace, message: str, metadata: object
) -> str:
    return await publisher.emit(
        args.room,
        message,
        agent_type=args.agent,
        level=args.level,
        metadata=metadata if isinstance(metadata, dict) else {},
    )


def _tail(args: argparse.Namespace) -> int:
    from .tail import tail

    url = args.url or "http://localhost:8080"
    try:
        return asyncio.run(
            tail(
                url,
                args.rooms,
                _client_token(args, args.rooms),
                history=args.history,
                level=args.level,
                agent=args.agent,
                max_logs=args.count,
            )
        )
    except KeyboardInterrupt:
        return 0


def _token(args: argparse.Namespace) -> int:
    from .auth import mint_token

    settings = Settings.from_env()
    secret = args.secret or settings.jwt_secret
    if not secret and settings.ephemeral_secret:
        secret = _dev_secret()
        if secret:
            print(
                "roomlogs token: signed with the development secret of `roomlogs serve`",
                file=sys.stderr,
            )
    if not secret:
        raise SettingsError(
            "JWT_SECRET", "`roomlogs token` signs with JWT_SECRET (or --secret): set it"
        )
    from .auth import SHORT_HS_KEY

    if len(secret.encode()) < SHORT_HS_KEY:
        print(
            f"roomlogs token: the secret is {len(secret.encode())} bytes; "
            f"HS256 wants at least {SHORT_HS_KEY}",
            file=sys.stderr,
        )
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
