"""Balanced draws: answer values and answer positions dealt like cards, so every value comes up equally often.

Independent uniform draws are balanced only on average; a few hundred questions then leave some colours or
option letters noticeably more frequent than others, and a small model learns that prior instead of looking.
A `Deck` deals every value once per round in a seeded random order, so counts differ by at most one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class Deck(Generic[T]):
    """Deals `values` in shuffled rounds from a shared generator (deterministic for a seed)."""

    def __init__(self, values: Sequence[T], rng: np.random.Generator):
        if not values:
            raise ValueError("a deck needs at least one value")
        self.values = list(values)
        self.rng = rng
        self._round: list[T] = []

    def _cards(self) -> list[T]:
        """What is left of the current round, starting a new round when it is used up."""
        if not self._round:
            self._round = [self.values[i] for i in self.rng.permutation(len(self.values))]
        return self._round

    def can_draw(self, allowed: Collection[T]) -> bool:
        """Whether the current round still holds one of `allowed`."""
        return any(card in allowed for card in self._cards())

    def draw(self, allowed: Collection[T] | None = None) -> T:
        """The next card of the round, or the next one in `allowed` (see `can_draw`) when a situation rules
        values out; the skipped cards stay for later draws of this round, so counts stay balanced."""
        cards = self._cards()
        for i, card in enumerate(cards):
            if allowed is None or card in allowed:
                return cards.pop(i)
        raise ValueError(f"no card of {sorted(map(str, allowed or ()))} is left in this round")
