"""Corruption benchmarks (ImageNet-C/-P, CIFAR-10-C/-P): generate, write, score.

* :func:`run_benchmark` scores a model, unit by unit, resumable (``shiftattack benchmark``);
* :func:`corrupt_suite` writes a suite in its published file format (``shiftattack corrupt``).
"""

from shiftattack.jobs.benchmark.run import BenchmarkConfig, run_benchmark
from shiftattack.jobs.benchmark.write import corrupt_suite

__all__ = ["BenchmarkConfig", "run_benchmark", "corrupt_suite"]
