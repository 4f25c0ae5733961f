import pytest
from pelt_helpers import make_batch


@pytest.fixture
def batch():
    return make_batch()
