"""The KATO engine: pure Python, no web or database imports."""
