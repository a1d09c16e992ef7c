"""The JavaScript package (clients/js: RoomStream and the Node Publisher) against the real
gateway: Node's own test runner (`node --test`) runs clients/js/test/*.test.js with the URLs and
tokens of two real gateway processes on a private Redis, and npm packs the package as it would
be published.

Node and npm are Debian's `nodejs` and `npm`, installed with apt when missing (as root; else
the test fails saying so, never skips); the devDependencies (`eventsource`, `typescript`) come
from the npm registry through `npm ci` and clients/js/package-lock.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.factories import SECRET, StartService, token
from tests.support.paths import ROOT
from tests.support.servers import RedisServer, debian_binary

JS = ROOT / "clients" / "js"
EXAMPLE = ROOT / "examples" / "node"
NESTJS = ROOT / "examples" / "nestjs"
NODE_TIMEOUT = 180


def _tools() -> tuple[str, str]:
    try:
        npm = debian_binary("npm", "npm")  # Debian's npm depends on its nodejs
        node = debian_binary("nodejs", "node", "nodejs")
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"Node.js and npm are needed for clients/js (Debian: nodejs, npm): {exc}")
    return node, npm


def _npm_ci(npm: str, directory: Path) -> None:
    """`npm ci` once the lock file changed: the dependencies, exactly as locked."""
    installed = directory / "node_modules" / ".package-lock.json"
    lock = directory / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            check=True,
            timeout=NODE_TIMEOUT,
        )


@pytest.fixture(scope="module")
def node_modules() -> tuple[str, str]:
    node, npm = _tools()
    _npm_ci(npm, JS)
    return node, npm


async def _node_test(node: str, files: list[str], env: dict[str, str], cwd: Path = JS) -> None:
    proc = await asyncio.create_subprocess_exec(
        node,
        "--test",
        "--test-reporter=tap",
        *files,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(NODE_TIMEOUT):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    # Every test file ran its tests and none was skipped or left unfinished.
    for count in ("# fail 0", "# skipped 0", "# todo 0", "# cancelled 0"):
        assert count in text, text
    assert "# pass 0" not in text, text


async def _gateways(service: StartService, redis_url: str) -> dict[str, str]:
    common = {"REDIS_URL": redis_url, "RETRY_MS": "100"}
    gateway = await service(**common)
    limited = await service(**common, MAX_CONNECTIONS="1")
    return {
        "ROOMLOGS_URL": gateway.url,
        "ROOMLOGS_LIMITED_URL": limited.url,
        "ROOMLOGS_TOKEN": token(),
        "ROOMLOGS_OTHER_TOKEN": token(rooms="other", publish="other"),
    }


async def test_room_stream_in_node(
    node_modules: tuple[str, str], service: StartService, redis_server: RedisServer
) -> None:
    env = await _gateways(service, redis_server.url)
    await _node_test(node_modules[0], ["test/stream.test.js"], env)


async def test_publisher_in_node(
    node_modules: tuple[str, str], service: StartService, redis_server: RedisServer
) -> None:
    env = await _gateways(service, redis_server.url)
    await _node_test(node_modules[0], ["test/publisher.test.js"], env)


@pytest.fixture(scope="module")
def example_installed(node_modules: tuple[str, str]) -> str:
    node, npm = node_modules
    _npm_ci(npm, EXAMPLE)
    return node


async def test_node_example_backend(
    example_installed: str, service: StartService, redis_server: RedisServer
) -> None:
    """examples/node (docs/nodejs.md): jsonwebtoken's tokens, the cookie, the publisher and
    the old route's hand-over, against a real gateway."""
    node = example_installed
    gateway = await service(REDIS_URL=redis_server.url)
    env = {"ROOMLOGS_URL": gateway.url, "JWT_SECRET": SECRET}
    await _node_test(node, ["test/example.test.js"], env, cwd=EXAMPLE)


@pytest.fixture(scope="module")
def nestjs_built(node_modules: tuple[str, str]) -> str:
    """examples/nestjs installed and compiled by its typescript devDependency."""
    node, npm = node_modules
    _npm_ci(npm, NESTJS)
    compiled = subprocess.run(
        [node, str(NESTJS / "node_modules" / "typescript" / "bin" / "tsc"), "-p", "tsconfig.json"],
        cwd=NESTJS,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return node


async def test_nestjs_example(
    nestjs_built: str, service: StartService, redis_server: RedisServer
) -> None:
    """examples/nestjs (docs/nodejs.md): the same checks as the plain example, through Nest's
    controller, services and redirect."""
    gateway = await service(REDIS_URL=redis_server.url)
    env = {"ROOMLOGS_URL": gateway.url, "JWT_SECRET": SECRET}
    await _node_test(nestjs_built, ["test/app.test.js"], env, cwd=NESTJS)


def test_declarations_type_check(node_modules: tuple[str, str]) -> None:
    """tsc (the typescript devDependency) compiles test/types.ts against the .d.ts files."""
    node, _ = node_modules
    tsc = JS / "node_modules" / "typescript" / "bin" / "tsc"
    done = subprocess.run(
        [node, str(tsc), "-p", "tsconfig.json"],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_npm_pack_holds_the_package_and_installs(
    node_modules: tuple[str, str], tmp_path: Path
) -> None:
    node, npm = node_modules
    packed = subprocess.run(
        [npm, "pack", "--json", "--pack-destination", str(tmp_path)],
        cwd=JS,
        capture_output=True,
        text=True,
        check=True,
        timeout=NODE_TIMEOUT,
    )
    (info,) = json.loads(packed.stdout)
    with tarfile.open(tmp_path / info["filename"]) as tar:
        names = sorted(tar.getnames())
        # The tarball's stream.js is the file itself, not the viewer's symlink to it.
        stream = tar.extractfile("package/stream.js")
        assert stream is not None
        assert stream.read() == (JS / "stream.js").read_bytes()
    assert names == [
        "package/README.md",
        "package/index.d.ts",
        "package/index.js",
        "package/package.json",
        "package/publisher.d.ts",
        "package/publisher.js",
        "package/stream.d.ts",
        "package/stream.js",
    ]

    # Installed from the tarball alone (no runtime dependency to fetch), it imports in Node.
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    subprocess.run(
        [npm, "install", "--offline", "--no-audit", "--no-fund", str(tmp_path / info["filename"])],
        cwd=app,
        check=True,
        capture_output=True,
        timeout=NODE_TIMEOUT,
    )
    script = (
        "import { RoomStream, Publisher, PublishError } from 'roomlogs-client';"
        "import { RoomStream as S } from 'roomlogs-client/stream';"
        "console.log(typeof RoomStream, typeof Publisher, typeof PublishError, S === RoomStream)"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
    )
    assert done.stdout.split() == ["function", "function", "function", "true"], done.stderr


def test_the_viewer_serves_the_package_file() -> None:
    """One RoomStream: the viewer's static/stream.js is the package's file, through a symlink."""
    served = ROOT / "service" / "static" / "stream.js"
    assert served.is_symlink()
    assert served.resolve() == (JS / "stream.js").resolve()
