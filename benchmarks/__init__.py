"""The performance harness behind the README's figures: `python -m benchmarks`."""
