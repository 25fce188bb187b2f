"""One error root for the processor package; each error carries its status and code."""

import pytest

from processor_image.engine import (
    EngineError,
    GeneNotFound,
    InvalidGeneValue,
    ObservationError,
    UnknownGene,
)
from processor_image.errors import ProcessorError
from processor_image.service.errors import PatternNotFound, SequenceFailed
from processor_image.storage import StorageError


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ProcessorError("bug"), 500, "INTERNAL_ERROR"),
        (EngineError("bad start-up value"), 400, "ENGINE_ERROR"),
        (ObservationError("no unique_id"), 422, "INVALID_OBSERVATION"),
        (UnknownGene("bogus"), 400, "HTTP_400"),
        (InvalidGeneValue("persistence", "an integer >= 1", -1), 400, "INVALID_GENE_VALUE"),
        (GeneNotFound("zzz"), 404, "HTTP_404"),
        (PatternNotFound("PTRN|0"), 404, "HTTP_404"),
        (StorageError("MongoDB failed"), 503, "STORAGE_UNAVAILABLE"),
        (SequenceFailed(ObservationError("no unique_id"), 2), 422, "INVALID_OBSERVATION"),
    ],
)
def test_every_error_has_one_root_and_its_own_status_and_code(
    error: ProcessorError, status: int, code: str
) -> None:
    assert isinstance(error, ProcessorError)
    assert (error.status, error.code) == (status, code)
    assert error.message


def test_gene_messages_say_what_to_send_instead() -> None:
    error = InvalidGeneValue("recall_threshold", "a number from 0 to 1", 7)
    assert error.message == (
        "Invalid value for gene recall_threshold: expected a number from 0 to 1, got 7"
    )
    assert UnknownGene("bogus").message == "Unknown gene: bogus"
