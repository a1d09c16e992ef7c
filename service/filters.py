"""The stream filters (`level=`, `agentType=`): one predicate for live messages and replays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .logs import LEVELS

LEVEL_RANK: Final = {name: rank for rank, name in enumerate(LEVELS)}
_UNKNOWN_RANK: Final = len(LEVELS)  # a log of no known level passes every `level=`


@dataclass(frozen=True, slots=True)
class StreamFilter:
    min_rank: int = 0
    agent_type: str | None = None

    @classmethod
    def of(cls, level: str | None, agent_type: str | None) -> StreamFilter | None:
        """None when nothing is filtered: the hub's shared writes are for such streams."""
        min_rank = LEVEL_RANK[level] if level else 0
        if not min_rank and agent_type is None:
            return None
        return cls(min_rank, agent_type)

    def wants(self, level: object, agent_type: object) -> bool:
        if self.agent_type is not None and agent_type != self.agent_type:
            return False
        if self.min_rank:
            rank = LEVEL_RANK.get(level, _UNKNOWN_RANK) if isinstance(level, str) else _UNKNOWN_RANK
            return rank >= self.min_rank
        return True
