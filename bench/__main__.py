"""`make bench`: run every benchmark and print its figures."""

from bench import cold_start, pipeline_latency

for module in (cold_start, pipeline_latency):
    print(f"== {module.__name__}")
    module.main()
    print()
