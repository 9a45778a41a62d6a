"""The backend conformance suite, in two halves (see :mod:`kirocache.testing.conformance`)."""
