"""Types of the compiled core (``_core.c``)."""

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

ABI: int
SHA_NI: bool

class Run:
    """The candidates of one state that reached the recall threshold."""

    def __len__(self) -> int: ...
    def names(self) -> list[str]: ...
    def universe(self) -> list[str]: ...
    def predictions(
        self,
        records: Mapping[str, Any],
        member_frequencies: Mapping[str, int],
        total_pattern_frequencies: int,
        total_symbols_in_patterns_frequencies: int,
        symbol_count: int,
        max_predictions: int,
        average: Callable[[list[dict[str, float]]], dict[str, float]],
        encode: Callable[[Any], bytes],
        /,
    ) -> bytes: ...

class Core:
    """Learned patterns, interned, with the inverted index the matcher starts from."""

    def __len__(self) -> int: ...
    def add(self, name: str, events: Sequence[Sequence[str]], /) -> bool: ...
    def clear(self) -> None: ...
    def match(
        self, state: Sequence[str], threshold: float, exhaustive: bool = False
    ) -> Run | None: ...

def get_matching_blocks(
    a: Sequence[Hashable], b: Sequence[Hashable], autojunk: bool = True
) -> list[tuple[int, int, int]]: ...
def get_opcodes(
    a: Sequence[Hashable], b: Sequence[Hashable], autojunk: bool = True
) -> list[tuple[str, int, int, int, int]]: ...
def round12(x: float, /) -> float: ...
def json(value: str | float | list[Any], /) -> bytes: ...
def pattern_hash(events: Sequence[Sequence[str]], /) -> str: ...
def sha1(data: bytes, portable: bool = False, /) -> str: ...
def learn(
    patterns: dict[str, Any],
    frequency: dict[str, int],
    members: dict[str, int],
    totals: Any,
    record_type: Callable[..., Any],
    name: str,
    events: Sequence[Sequence[str]],
    /,
) -> bool: ...
