"""FusionFactory: learn from multi-LLM routing logs how to fuse LLMs.

Importing this package has no side effects: no network, no model loading.
"""

__version__ = "0.1.0"
