"""The benchmark harness: data, models, training, measurement, tracking, execution, reporting."""

__version__ = "0.1.0"
