"""What limited a step: which core was saturated, and by whom (the `limited by` column).

- `server CPU`: the server used ≥ 90 % of its core(s);
- `load generator`: the client core was ≥ 90 % busy, at least 75 % of it the load generator and
  Redis; `client core (load generator x %, redis y %)` when Redis took 40 % or more (the
  tutorial pattern's fan-out runs in Redis);
- `… shared with other processes`: the core was ≥ 90 % busy, mostly not by us;
- with the server's workers on the client core too (WORKERS=2 on two cores): which cores were
  full and how the busy time split between the server and the client side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._common import NOISY, OWN_SHARE, SATURATED
from .records import Step

REDIS_HEAVY = 0.4  # Redis' share of the client core from which the verdict names it


@dataclass(frozen=True)
class Cores:
    """Where the processes ran: the server's cores and the client's (None: not pinned)."""

    server: list[int] | None
    client: int | None


def bottleneck(step: Step, cores: Cores) -> str | None:
    """What was saturated in `step`; None when nothing was."""
    server, client = cores.server, cores.client
    if server and client in server:
        assert client is not None
        return shared_bottleneck(step, server, client)
    sides: list[str] = []
    if server:
        saturated = step.server_core >= SATURATED * len(server) or all(
            step.cores.get(c, 0.0) >= SATURATED for c in server
        )
        if saturated:
            mine = step.server_core >= OWN_SHARE * len(server)
            sides.append("server CPU" if mine else "server core shared with other processes")
    elif step.server_core >= SATURATED:
        sides.append("server CPU")
    client_busy = step.cores.get(client, 0.0) if client is not None else step.loadgen_core
    own = step.loadgen_core + step.redis_core
    if client_busy >= SATURATED or own >= SATURATED:
        if own >= OWN_SHARE:
            who = "load generator"
            if step.redis_core >= REDIS_HEAVY:
                who = (
                    f"client core (load generator {step.loadgen_core:.0%}, "
                    f"redis {step.redis_core:.0%})"
                )
            sides.append(who)
        else:
            sides.append("client core shared with other processes")
    return " + ".join(sides) or None


def shared_bottleneck(step: Step, cores: Sequence[int], client: int) -> str | None:
    """What was full when the server's workers share the load generator's core: which cores,
    and how the busy time split between the server and the client side (load generator +
    redis). With every core full, neither side alone is the limit: the machine's CPU is."""
    full = [c for c in cores if step.cores.get(c, 0.0) >= SATURATED]
    client_side = step.loadgen_core + step.redis_core
    split = f"server {step.server_core:.2f} cores, client {client_side:.2f}"
    busy_all = sum(step.cores.get(c, 0.0) for c in cores)
    if busy_all - step.server_core - client_side >= NOISY:
        split += f", other processes {busy_all - step.server_core - client_side:.2f}"
    if len(full) == len(cores):
        return f"both cores ({split})"
    if full == [client]:
        idle = [c for c in cores if c != client]
        spare = ", ".join(f"core {c} {step.cores.get(c, 0.0):.0%}" for c in idle)
        return f"core {client} (load generator's; {split}; {spare})"
    if full:
        return f"core {full[0]} ({split}; core {client} {step.cores.get(client, 0.0):.0%})"
    return None
