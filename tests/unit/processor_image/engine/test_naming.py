import pytest

from processor_image.engine.naming import pattern_hash, vector_symbol


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ([["hello"], ["world"], ["test"]], "386fbb12926e8e015a1483990df913e8410f94ce"),
        ([["a"], ["b"], ["c"]], "b98534b32c1d7489d4ce1a48724aa65aeecbdba9"),
        ([["a", "b"], ["c"]], "e9e43f2309079f2843665ab773996d99489306d6"),
        ([["alpha", "beta"]], "224520a1b79566201c386f62a1d7525a4cda9ea6"),
        ([["it's"], ["b"]], "c1fb2cb947c025a25df1e665d0d7e99dcba9ee46"),
    ],
)
def test_pattern_names_match_the_reference_hashes(pattern: list[list[str]], name: str) -> None:
    assert pattern_hash(pattern) == name


@pytest.mark.parametrize(
    ("vectors", "symbol"),
    [
        ([[1.0, 2.0, 3.0]], "VECTOR|fe5de4472f7e4d5c9cdd19cadebfa06fe3da8e43"),
        ([[1.0, 2.0]], "VECTOR|6786a5fc0b30a70ed8fdbaaa451e7c26b5d6c359"),
        ([[3.0, 4.0]], "VECTOR|4f3f3ee04c71a194ada932746e703ab1c6f80024"),
        ([[0.5, 0.5], [1.0, 0.0]], "VECTOR|f11daefdddee30b6a7a043c084fad802f0553a99"),
        ([[1, 0, 0]], "VECTOR|9d58821e286eae6a77923d694a12ede7cbeabfbd"),
        ([[0.1], [0.2]], "VECTOR|63c348755ad39caa14d8b995038869cfaacb1e4b"),
        ([list(range(100))], "VECTOR|77d5eabadc98d9ab6d88f9329939792cb266d309"),
    ],
)
def test_vector_symbols_match_the_reference(vectors: list[list[float]], symbol: str) -> None:
    assert vector_symbol(vectors) == symbol


def test_vectors_that_cannot_broadcast_are_an_observation_error() -> None:
    from processor_image.engine import ObservationError

    with pytest.raises(ObservationError):
        vector_symbol([[1.0, 2.0], [1.0, 2.0, 3.0]])
