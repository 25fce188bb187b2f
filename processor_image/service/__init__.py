"""The processor's HTTP and WebSocket service."""
