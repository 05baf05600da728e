"""The measuring tools, apart from the pipeline they measure: `bench` and the profiler (frame latency), `evaluate`
(self- and cross-reenactment scored by an independent judge) and the image and landmark metrics."""
