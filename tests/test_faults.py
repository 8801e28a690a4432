"""The fault tests (tests/faults.py), unfused: one trial per Ray trial."""
from faults import *  # noqa: F401,F403: the tests and their fixtures

MODE = "off"
