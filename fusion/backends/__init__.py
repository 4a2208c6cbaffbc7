"""LLM backends behind one interface. Heavy libraries are imported only when a backend is built."""

from fusion.backends.base import (
    BACKENDS,
    Backend,
    BackendOptionError,
    Generation,
    Request,
    backend_class,
    check_pool,
    make_backend,
)

__all__ = ["BACKENDS", "Backend", "BackendOptionError", "Generation", "Request", "backend_class", "check_pool",
           "make_backend"]
