"""Scripts that print measured figures (speed, memory, decoding, precision, parity margins); not part of the
installed package. Run each as a module from the repository root: ``python -m benchmarks.<name> [--help]``."""
