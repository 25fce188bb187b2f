"""Gateway mode: long-lived processors registered from configuration, reached by id."""
