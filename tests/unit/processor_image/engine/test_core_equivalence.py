"""The compiled core computes exactly what the pure-Python reference computes.

Byte-identical predictions JSON on random knowledge bases and observation streams, dense
(a handful of symbols) and sparse, long sequences (200+ symbols, where difflib's auto-junk
heuristic would apply if it were on), symbols JSON must escape, and edge cases; plus the
core's difflib, round() and JSON writer against the standard library's and msgspec's own.
"""

from __future__ import annotations

import difflib
import gc
import hashlib
import math
import random
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processor_image.engine import Genes, Processor
from processor_image.engine.compiled import CompiledIndex
from processor_image.engine.core import compiled_module
from processor_image.engine.index import PatternIndex
from processor_image.engine.knowledge import PatternRecord, Totals
from processor_image.engine.naming import pattern_hash
from processor_image.engine.predictions import predict_json
from processor_image.storage.memory import MemoryKnowledgeBase
from processor_image.storage.memory import _learn as memory_learn

core = compiled_module()
pytestmark = pytest.mark.skipif(core is None, reason="the compiled core is not built here")

encode = msgspec.json.Encoder().encode
THRESHOLDS = [-0.2, 0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.2]
DENSE = [f"d{i}" for i in range(4)]
SPARSE = [f"sym{i:03d}" for i in range(200)]
ESCAPED = [
    'say "hi"',
    "back\\slash",
    "tab\there",
    "\x00\x01\x1f\x7f",
    "é",
    "€",
    "😀",
    "\u2028",
    "a",
]
"""Symbols the JSON writer must escape (or must not): quotes, backslashes, control and
non-ASCII characters, a character outside the BMP."""


def alphabet(draw: st.DrawFn) -> list[str]:
    return draw(st.sampled_from([DENSE, DENSE[:1], SPARSE[:12], SPARSE, ESCAPED]))


@st.composite
def knowledge(draw: st.DrawFn) -> tuple[list[str], list[list[list[str]]], list[str]]:
    """An alphabet, patterns (some long), and a state over it (empty, one symbol, long...)."""
    symbols = alphabet(draw)
    sym = st.sampled_from(symbols)
    event = st.lists(sym, min_size=1, max_size=4)
    short = st.lists(event, min_size=1, max_size=8)
    long = st.lists(st.lists(sym, min_size=20, max_size=40), min_size=6, max_size=10)
    patterns = draw(st.lists(st.one_of(short, short, short, long), max_size=20))
    state = draw(
        st.one_of(
            st.lists(sym, max_size=1),
            st.lists(sym, min_size=2, max_size=30),
            st.lists(sym, min_size=200, max_size=320),
        )
    )
    return symbols, patterns, state


def both_indexes(
    patterns: list[list[list[str]]], rng: random.Random, unknown_share: float = 0.0
) -> tuple[MemoryKnowledgeBase, PatternIndex, CompiledIndex]:
    """A knowledge base and the same patterns in both indexes.

    With ``unknown_share`` some indexed patterns are missing from the knowledge base (as when
    a shared MongoDB knowledge base was cleared by another processor): no record, no stats.
    """
    assert core is not None
    kb = MemoryKnowledgeBase()
    python, compiled = PatternIndex(), CompiledIndex(core.Core())
    for pattern in patterns:
        name = pattern_hash(pattern)
        if rng.random() >= unknown_share:
            emotives = {"joy": rng.uniform(-1, 1)} if rng.random() < 0.3 else None
            if emotives is not None and rng.random() < 0.3:  # huge, tiny, odd names
                emotives = {'a "b"\\': rng.choice([1e300, -3e-300, 1e-5, 5e-324]), "é": 0.0}
            for _ in range(rng.randint(1, 3)):
                kb.learn(name, pattern, emotives, 3)
        python.add(name, pattern)
        compiled.add(name, pattern)
    return kb, python, compiled


def predictions_json(
    state: list[str], index: PatternIndex | CompiledIndex, kb: MemoryKnowledgeBase, **args: Any
) -> bytes:
    return predict_json(state, index, kb, **args)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=knowledge(),
    threshold=st.sampled_from(THRESHOLDS),
    max_predictions=st.integers(min_value=0, max_value=30),
    exhaustive=st.booleans(),
    unknown_share=st.sampled_from([0.0, 0.0, 0.3, 1.0]),
    seed=st.integers(min_value=0, max_value=2**32),
)
@example(  # the spec's worked example (§4.8)
    case=(["hello", "world", "test"], [[["hello"], ["world"], ["test"]]], ["hello", "world"]),
    threshold=0.1,
    max_predictions=10,
    exhaustive=False,
    unknown_share=0.0,
    seed=0,
)
def test_predictions_json_identical_on_random_knowledge(
    case: tuple[list[str], list[list[list[str]]], list[str]],
    threshold: float,
    max_predictions: int,
    exhaustive: bool,
    unknown_share: float,
    seed: int,
) -> None:
    _, patterns, state = case
    kb, python, compiled = both_indexes(patterns, random.Random(seed), unknown_share)
    args = {
        "recall_threshold": threshold,
        "max_predictions": max_predictions,
        "exhaustive": exhaustive,
    }
    written = predictions_json(state, compiled, kb, **args)
    assert written == predictions_json(state, python, kb, **args)
    assert encode(msgspec.json.decode(written)) == written  # compact, as msgspec writes it


def observe_stream(processor: Processor, seed: int, symbols: list[str], steps: int) -> list[bytes]:
    """Observations with learns, emotives, clears and gene changes; every step's output."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for n in range(steps):
        event = rng.sample(symbols, min(len(symbols), rng.randint(1, 4)))
        emotives = {"e": rng.uniform(-1, 1)} if rng.random() < 0.2 else None
        processor.observe(event, emotives=emotives, unique_id=f"u{n}")
        out.append(encode(processor.predictions()))
        assert processor.predictions_json() == out[-1]  # as GET /predictions sends them
        roll = rng.random()
        if roll < 0.12:
            out.append(processor.learn().encode())
        elif roll < 0.14:
            processor.clear_stm()
        elif roll < 0.16:
            genes = {"recall_threshold": rng.choice([t for t in THRESHOLDS if 0 <= t <= 1])}
            genes["max_predictions"] = rng.randint(1, 40)
            processor.update_genes(genes)
    out.append(encode(processor.snapshot()))
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    symbols=st.sampled_from([DENSE, SPARSE[:10], SPARSE[:50], SPARSE]),
    max_pattern_length=st.sampled_from([0, 0, 3, 12]),
)
def test_processor_streams_identical(
    seed: int, symbols: list[str], max_pattern_length: int
) -> None:
    streams = [
        observe_stream(
            Processor(
                processor_id="p1",
                kb=MemoryKnowledgeBase(),
                genes=Genes(max_pattern_length=max_pattern_length),
                core=name,
            ),
            seed,
            symbols,
            150,
        )
        for name in ("python", "compiled")
    ]
    assert streams[0] == streams[1]


def test_dense_workload_stream_identical() -> None:
    """The benchmark's dense workload: 2-4 of 50 symbols, learn every 10, up to 60 patterns."""
    vocabulary = [f"s{i:02d}" for i in range(50)]
    outputs = []
    for name in ("python", "compiled"):
        rng = random.Random(11)
        processor = Processor(processor_id="p1", kb=MemoryKnowledgeBase(), core=name)
        out = []
        for n in range(1, 601):
            processor.observe(rng.sample(vocabulary, rng.randint(2, 4)), unique_id=f"u{n}")
            out.append(encode(processor.predictions()))
            if n % 10 == 0:
                processor.learn()
        outputs.append(out)
    assert outputs[0] == outputs[1]


def test_restored_processor_predicts_identically() -> None:
    """A snapshot taken on one core and restored on the other gives the same predictions."""
    source = Processor(processor_id="p1", kb=MemoryKnowledgeBase(), core="python")
    observe_stream(source, 5, SPARSE[:20], 80)
    target = Processor(processor_id="p1", kb=MemoryKnowledgeBase(), core="compiled")
    target.restore(source.snapshot())
    for processor in (source, target):
        processor.observe(["sym001", "sym002", "sym003"], unique_id="last")
    assert encode(target.predictions()) == encode(source.predictions())


blocks_input = st.sampled_from([2, 3, 8, 40]).flatmap(
    lambda k: st.tuples(
        st.lists(st.integers(0, k - 1), max_size=60),
        st.one_of(
            st.lists(st.integers(0, k - 1), max_size=60),
            st.lists(st.integers(0, k - 1), min_size=200, max_size=400),
        ),
    )
)


@settings(max_examples=400, deadline=None)
@given(pair=blocks_input, autojunk=st.booleans())
def test_matching_blocks_and_opcodes_equal_difflib(
    pair: tuple[list[int], list[int]], autojunk: bool
) -> None:
    assert core is not None
    a, b = pair
    reference = difflib.SequenceMatcher(None, a, b, autojunk=autojunk)
    assert core.get_matching_blocks(a, b, autojunk) == [
        tuple(block) for block in reference.get_matching_blocks()
    ]
    assert core.get_opcodes(a, b, autojunk) == reference.get_opcodes()


def test_autojunk_ignores_popular_elements_of_long_sequences() -> None:
    """The spec's case (§4.3): with auto-junk a short pattern scores 0 against 300 symbols."""
    assert core is not None
    rng = random.Random(3)
    b = [rng.choice("pqrs") for _ in range(300)]
    a = list("pqrs")
    on = core.get_matching_blocks(a, b, True)
    off = core.get_matching_blocks(a, b, False)
    assert on == [tuple(x) for x in difflib.SequenceMatcher(None, a, b).get_matching_blocks()]
    assert off == [
        tuple(x) for x in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
    ]
    assert sum(n for *_, n in on) < sum(n for *_, n in off)


@settings(max_examples=2000, deadline=None)
@given(
    x=st.one_of(
        st.floats(allow_nan=False, allow_infinity=True),
        st.floats(min_value=-10, max_value=10),
        st.integers(-(2**40), 2**40).map(lambda k: k / 8192),  # ties at the 13th decimal
        st.integers(-(2**53), 2**53).map(lambda k: k * 1e-12),
        st.integers(-(10**15), 10**15).map(lambda k: (k + 0.5) / 1e12),
    )
)
@example(x=0.0001220703125)
@example(x=-0.0)
@example(x=4503.599627370496)
@example(x=1e300)
def test_round12_equals_python_round(x: float) -> None:
    assert core is not None
    got = core.round12(x)
    want = round(x, 12)
    assert got == want
    assert math.copysign(1.0, got) == math.copysign(1.0, want)


symbol_text = st.one_of(
    st.sampled_from(["a", "it's", 'say "hi"', "back\\slash", "tab\there", "\x7f", "é", "\ud800"]),
    st.text(max_size=12),
)


@settings(max_examples=500, deadline=None)
@given(events=st.lists(st.lists(symbol_text, max_size=6), max_size=8))
@example(events=[])
@example(events=[[]])
@example(events=[["x" * 200] * 40])  # several SHA-1 blocks
def test_pattern_hash_equals_python(events: list[list[str]]) -> None:
    assert core is not None
    assert core.pattern_hash(events) == pattern_hash(events)
    assert core.pattern_hash([tuple(event) for event in events]) == pattern_hash(events)


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=300), portable=st.booleans())
@example(data=b"", portable=False)
def test_sha1_equals_hashlib(data: bytes, portable: bool) -> None:
    """Both SHA-1 implementations (the CPU's SHA instructions, the portable code)."""
    assert core is not None
    assert core.sha1(data, portable) == hashlib.sha1(data, usedforsecurity=False).hexdigest()


def test_sha1_every_tail_length() -> None:
    """The padding: every length of a last block (55/56/63/64 bytes are the edges), both ways."""
    assert core is not None
    data = bytes(range(256)) * 3
    for n in range(len(data)):
        want = hashlib.sha1(data[:n], usedforsecurity=False).hexdigest()
        assert core.sha1(data[:n]) == want
        assert core.sha1(data[:n], True) == want


def test_pattern_hash_across_block_boundaries() -> None:
    """Pattern texts of every length up to a few blocks, and one longer than the stack buffer."""
    assert core is not None
    for k in range(300):
        events = [["x" * k], ["y"] * (k % 7)]
        assert core.pattern_hash(events) == pattern_hash(events)
    events = [[f"symbol-{i:05d}" for i in range(40)] for _ in range(30)]  # ~17 KB of text
    assert core.pattern_hash(events) == pattern_hash(events)


def distinct_copy(symbol: str) -> str:
    """An equal symbol that is another object (as two decoded JSON bodies give)."""
    copy = "".join(list(symbol))
    assert copy == symbol
    return copy if len(symbol) > 1 else symbol


learns = st.lists(
    st.tuples(
        st.lists(st.lists(st.sampled_from(SPARSE[:15]), max_size=5), max_size=6),
        st.one_of(st.none(), st.dictionaries(st.sampled_from("ab"), st.floats(-1, 1))),
        st.integers(min_value=1, max_value=3),  # times learned (frequency on re-learn)
        st.booleans(),  # events as tuples of distinct-but-equal strings
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(patterns=learns, persistence=st.sampled_from([0, 1, 3]))
@example(patterns=[([["sym000"] * 70 + SPARSE[:70]], None, 2, False)], persistence=3)
def test_memory_store_learns_identically_with_the_compiled_learn(
    patterns: list[tuple[list[list[str]], dict[str, float] | None, int, bool]], persistence: int
) -> None:
    """The memory store's learn on ``_core.learn`` leaves exactly what the Python one leaves.

    Frequencies on re-learn, emotives (window, symbol sums), symbol frequencies and member
    frequencies (values and first-seen order), totals, and the records themselves.
    """
    assert core is not None
    stores = [MemoryKnowledgeBase(core="python"), MemoryKnowledgeBase(core="compiled")]
    for events, emotives, times, as_tuples in patterns:
        name = pattern_hash(events)
        for _ in range(times):
            given: Any = (
                [tuple(distinct_copy(s) for s in event) for event in events]
                if as_tuples
                else events
            )
            learned = [kb.learn(name, given, emotives, persistence) for kb in stores]
            assert learned[0] == learned[1]
    gc.collect()  # the compiled store's lists are not tracked: still all there after a collection
    python, compiled = stores
    assert encode(compiled.dump()) == encode(python.dump())
    assert encode(compiled.totals()) == encode(python.totals())
    assert list(compiled.member_frequencies([]).items()) == list(
        python.member_frequencies([]).items()
    )
    symbols = [symbol for events, *_ in patterns for event in events for symbol in event]
    assert encode(compiled.symbol_stats(symbols)) == encode(python.symbol_stats(symbols))
    for events, *_ in patterns:
        name = pattern_hash(events)
        assert encode(compiled.get_pattern(name)) == encode(python.get_pattern(name))


@settings(max_examples=200, deadline=None)
@given(patterns=learns)
def test_compiled_learn_equals_the_reference_on_its_own(
    patterns: list[tuple[list[list[str]], dict[str, float] | None, int, bool]],
) -> None:
    """``_core.learn`` and ``memory._learn`` on bare dicts: same result, same dicts in order."""
    assert core is not None
    sides: list[tuple[Any, ...]] = [
        ({}, {}, {}, Totals(), memory_learn),
        ({}, {}, {}, Totals(), core.learn),
    ]
    for events, _, times, _ in patterns:
        name = pattern_hash(events)
        for _ in range(times):
            got = [
                learn(records, frequency, members, totals, PatternRecord, name, events)
                for records, frequency, members, totals, learn in sides
            ]
            assert got[0] == got[1]
    for python, compiled in zip(sides[0][:4], sides[1][:4], strict=True):
        if isinstance(python, dict):
            assert list(compiled.items()) == list(python.items())
        assert encode(compiled) == encode(python)


def test_compiled_learn_refuses_what_the_reference_refuses() -> None:
    """An unhashable symbol: TypeError from both, and neither store changed."""
    assert core is not None
    for learn in (memory_learn, core.learn):
        records: dict[str, PatternRecord] = {}
        counts: tuple[dict[str, int], dict[str, int]] = ({}, {})
        events: Any = [["a", ["not", "hashable"]]]
        with pytest.raises(TypeError):
            learn(records, *counts, Totals(), PatternRecord, "n", events)
        assert records == {}
        assert counts == ({}, {})
    with pytest.raises(TypeError):
        core.learn({}, {}, {}, Totals(), PatternRecord, "n")  # type: ignore[call-arg]


def test_processor_learn_identical_on_both_cores() -> None:
    """``Processor.learn`` end to end (STM taken, emotives averaged, auto-learn): same names,
    same knowledge, same snapshot, on the compiled core and on the pure-Python one."""
    outputs = []
    for name in ("python", "compiled"):
        rng = random.Random(5)
        processor = Processor(
            processor_id="p1",
            kb=MemoryKnowledgeBase(core=name),
            genes=Genes(max_pattern_length=4, persistence=2),
            core=name,
        )
        out = []
        for n in range(120):
            emotives = {"joy": rng.uniform(-1, 1)} if rng.random() < 0.3 else None
            result = processor.observe(
                rng.sample(SPARSE[:12], rng.randint(1, 3)), emotives=emotives, unique_id=f"u{n}"
            )
            out.append(encode(result))
            if rng.random() < 0.2:
                out.append(processor.learn().encode())
        out.append(encode(processor.snapshot()))
        outputs.append(out)
    assert outputs[0] == outputs[1]


@settings(max_examples=3000, deadline=None)
@given(
    value=st.one_of(
        st.floats(),
        st.floats(min_value=-1e-3, max_value=1e-3),
        st.integers(-(2**53), 2**53).map(lambda k: k * 1e-12),
        st.integers(-(2**52), 2**52).map(lambda k: k / 1e12),  # round(x, 12)'s results
        st.integers(-(10**8), 10**8).map(lambda k: k / 1e12),  # around 1e-5
        st.integers(-60, 60).map(lambda e: 1.2345 * 10.0**e),
        st.integers(-(2**63), 2**63 - 1),
        st.text(),
        st.lists(st.one_of(st.floats(), st.text(max_size=4)), max_size=4),
    )
)
@example(value=[1e-5, 9.999999999999999e-6, 1e-4, 1e16, 9999999999999998.0, -0.0, 5e-324])
@example(value=[float("nan"), float("inf"), -float("inf"), 1.7976931348623157e308])
@example(value="".join(map(chr, range(0x80))) + "é€😀\u2028\ufeff")
def test_json_writer_writes_what_msgspec_writes(value: Any) -> None:
    """Floats (shortest repr, msgspec's layout, null when not finite), ints, strings."""
    assert core is not None
    assert core.json(value) == encode(value)


def test_json_writer_refuses_lone_surrogates_as_msgspec_does() -> None:
    assert core is not None
    with pytest.raises(UnicodeEncodeError):
        encode("\ud800")
    with pytest.raises(UnicodeEncodeError):
        core.json("\ud800")


def test_json_writer_escapes_symbols_in_predictions() -> None:
    """Escaped symbols in every list of a prediction (matches, past, missing, extras...),
    pattern and state symbols both, read back as the same strings."""
    assert core is not None
    pattern = [['"q"'], ["\\", "\n"], ["é", "\x01"], ["😀"]]
    state = ['"q"', "\\", "not\tlearned", "😀"]
    kb, python, compiled = both_indexes([pattern], random.Random(0))
    args: dict[str, Any] = {"recall_threshold": 0.1, "max_predictions": 5}
    written = predictions_json(state, compiled, kb, **args)
    assert written == predictions_json(state, python, kb, **args)
    (prediction,) = msgspec.json.decode(written)
    assert prediction["sequence"] == pattern
    assert prediction["extras"] == ["not\tlearned"]
    assert prediction["missing"] == ["\n", "é", "\x01"]
