"""HTTP API of the session manager: one module per resource."""
