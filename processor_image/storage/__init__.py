"""Knowledge-base stores behind the engine's ``KnowledgeBase`` port."""
