"""Local stand-ins for external services, used by `make demo`, tests and benchmarks;
never shipped in the Lambda layer.
"""
