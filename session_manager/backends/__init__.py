"""Backends: where processors run."""
