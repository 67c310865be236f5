"""Targets for tests/test_patching.py (imported in-process, removed from sys.modules after)."""
