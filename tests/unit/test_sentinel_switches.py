"""Which primary the gateway takes from the sentinels' answers (`Switches`), and the options
REDIS_URL gives the primary's connections under Sentinel."""

from __future__ import annotations

from typing import Any

from service.broker.sentinel import (
    SWITCH_MEMORY,
    PrimaryConnection,
    PrimarySSLConnection,
    Switches,
    sentinel_options,
)
from tests.support.factories import settings

OLD = ("10.0.0.1", 6379)
NEW = ("10.0.0.2", 6379)


def state(address: tuple[str, int], epoch: int, *flags: str) -> dict[str, Any]:
    return {
        "ip": address[0],
        "port": address[1],
        "config-epoch": epoch,
        "is_master": "master" in flags or not flags,
        "is_sdown": "s_down" in flags,
        "is_odown": "o_down" in flags,
    }


def test_a_switch_of_our_service_is_heard() -> None:
    switches = Switches("mymaster")
    assert switches.heard(b"other 10.0.0.1 6379 10.0.0.2 6379") is None
    assert switches.heard(b"mymaster garbage") is None
    assert switches.heard(b"mymaster 10.0.0.1 6379 10.0.0.2 6379") == (OLD, NEW)
    assert (switches.announced, switches.demoted) == (NEW, OLD)


def test_the_highest_config_epoch_wins() -> None:
    switches = Switches("mymaster")
    # Two sentinels have not heard of the failover yet: the one that did is right.
    states = [state(OLD, 1), state(OLD, 1), state(NEW, 2)]
    assert switches.choose(states, now=0.0) == NEW


def test_the_old_primary_of_a_recent_switch_is_refused() -> None:
    switches = Switches("mymaster")
    switches.heard("mymaster 10.0.0.1 6379 10.0.0.2 6379")
    at = switches.heard_at
    # Every sentinel still names the old primary (none has the new config yet): no primary
    # rather than a publish acknowledged by one that has been demoted.
    assert switches.choose([state(OLD, 1)] * 3, now=at + 1) is None
    assert switches.choose([state(OLD, 1), state(NEW, 1)], now=at + 1) == NEW
    # Long after, a sentinel that names it again is believed (a later failover back to it).
    assert switches.choose([state(OLD, 3)], now=at + SWITCH_MEMORY + 1) == OLD


def test_down_primaries_are_skipped_and_ties_go_to_the_announced_one() -> None:
    switches = Switches("mymaster")
    assert switches.choose([state(OLD, 1, "master", "s_down")], now=0.0) is None
    assert switches.choose([state(OLD, 1, "slave")], now=0.0) is None
    switches.note(None, NEW)
    assert switches.choose([state(OLD, 2), state(OLD, 2), state(NEW, 2)], now=0.0) == NEW
    # Without an announcement, the address most sentinels name.
    assert Switches("mymaster").choose([state(OLD, 2), state(NEW, 2), state(OLD, 2)], 0) == OLD


def test_redis_url_gives_only_the_password_and_db() -> None:
    data, sentinels = sentinel_options(
        settings(redis_sentinels=(("s1", 26379),), redis_url="redis://user:pw@ignored:1/3")
    )
    assert data["username"] == "user"
    assert data["password"] == "pw"
    assert data["db"] == 3
    assert "host" not in data
    assert "port" not in data
    assert data["connection_class"] is PrimaryConnection
    assert "password" not in sentinels  # a sentinel's own password is not the data one
    plain, _ = sentinel_options(settings(redis_sentinels=(("s1", 26379),)))
    assert plain["connection_class"] is PrimaryConnection
    assert "password" not in plain
    tls, tls_sentinels = sentinel_options(
        settings(redis_sentinels=(("s1", 26379),), redis_url="rediss://:pw@x/0")
    )
    assert tls["connection_class"] is PrimarySSLConnection
    assert tls_sentinels["ssl"] is True
