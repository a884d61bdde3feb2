"Shared pytest set-up for tests/."

import inspect

import pytest


def pytest_pycollect_makeitem(collector, name, obj):
    """Collect as tests only the functions a test module defines itself: `from fastcore.test import *` (or
    `from nbdev.test import test_nb`) brings helpers named test_* that pytest would otherwise run as tests."""
    if isinstance(collector, pytest.Module) and inspect.isfunction(obj) and obj.__module__ != collector.module.__name__:
        return []
    return None


from torchvision_ops import declare_torchvision_ops
declare_torchvision_ops()
