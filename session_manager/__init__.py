"""Session manager: one private KATO processor per user session, behind one front door."""
