"""`make bench`: run every benchmark and print its figures."""

from bench import alerter, cold_start, config, delivery, pipeline_latency, poll

for module in (cold_start, pipeline_latency, poll, alerter, delivery, config):
    print(f"== {module.__name__}")
    module.main()
    print()
