"""`make bench`: run every benchmark and print its figures."""

from bench import alerter, chart, cold_start, config, delivery, digest, pipeline_latency, poll, reply_sizes

for module in (cold_start, pipeline_latency, poll, reply_sizes, alerter, delivery, config, chart, digest):
    print(f"== {module.__name__}")
    module.main()
    print()
