"""Fixtures of the faults scenario's tests, those every scenario shares (tools/fixtures.py): the inventory
molecule gives pytest, and the site as the doctor gathers it (test_faults.py takes it from a walk instead)."""

from tools.fixtures import inventory_fixture, site_fixture  # noqa: F401 (pytest finds them here)
