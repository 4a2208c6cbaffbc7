"""Query-level fusion: routers that pick a candidate (LLM x mode) per query."""

from fusion.levels.query.base import ROUTERS, Router, load_router, make_router
from fusion.levels.query.data import RoutingData, build_routing_data

__all__ = ["ROUTERS", "Router", "RoutingData", "build_routing_data", "load_router", "make_router"]
