"""LLM backends behind one interface. Heavy libraries are imported only when a backend is built."""

from fusion.backends.base import BACKENDS, Backend, Generation, make_backend

__all__ = ["BACKENDS", "Backend", "Generation", "make_backend"]
