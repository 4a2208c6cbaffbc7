"""Prefect flows: thin drivers over the stage functions in ``fusion.pipeline``."""
