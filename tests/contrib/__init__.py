"""Tests of the framework integrations (kirocache.contrib) and of the examples."""
