"""Prefect flows: thin drivers over the stage runners in ``fusion.stages``."""
