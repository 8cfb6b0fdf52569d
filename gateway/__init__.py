"""mediagate gateway: the FastAPI edge, the governed flow, settings, CLI."""
