"""The test suite (a package, so that test modules and benchmarks import the helpers in `tests.support`)."""
