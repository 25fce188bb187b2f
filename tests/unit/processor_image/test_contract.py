"""``processor_image.contract``: what the manager may import, light enough for the manager."""

import subprocess
import sys

import processor_image.contract

HEAVY = ("litestar", "uvicorn", "httpx", "pymongo", "numpy", "redis", "starlette", "websockets")


def test_the_contract_loads_no_web_framework_database_driver_or_numpy() -> None:
    code = (
        "import sys, processor_image.contract\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_contract_names_exactly_its_public_members() -> None:
    assert set(processor_image.contract.__all__) == {
        "EXIT_OUT_OF_MEMORY",
        "OUT_OF_MEMORY_LINE",
        "GENE_ALIASES",
        "GENE_RULES",
        "GeneError",
        "GeneRule",
        "InvalidGeneValue",
        "UnknownGene",
        "database_name",
        "openapi_document",
        "validate_genes",
    }


def test_the_processor_openapi_document_lists_its_routes() -> None:
    paths = processor_image.contract.openapi_document()["paths"]
    assert {"/observe", "/learn", "/stm", "/genes/update", "/state"} <= set(paths)
