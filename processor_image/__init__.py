"""KATO processor: the sequence-learning engine, its knowledge bases and its HTTP/WS service."""
