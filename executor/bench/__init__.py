"""The benchmarks behind ``computebus bench``, imported only by the CLI."""

from schemas.errors import SetupError


class BenchFailed(SetupError):
    """A part the benchmark needs did not start or answered wrongly."""
