"""The diffusers side: scheduler classes, loading a pipeline, running one scheduler (torch inside)."""
