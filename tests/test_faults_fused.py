"""The fault tests (tests/faults.py), fused: bundles of two configurations."""
from faults import *  # noqa: F401,F403: the tests and their fixtures

MODE = 2
