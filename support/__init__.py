"""Code the tests and the benchmarks share (data builders, model-version helpers).

Not part of the installed package: ``bench/`` and ``tests/`` import it from the
repository root, so neither imports the other.
"""
