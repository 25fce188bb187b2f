import subprocess
import sys

FORBIDDEN = ("litestar", "uvicorn", "httpx", "pymongo", "redis", "starlette", "websockets")


def test_engine_imports_no_web_framework_or_database_driver() -> None:
    code = (
        "import sys, processor_image.engine\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
