"""Fixtures of the unit tier: actions run against a recording stand-in."""
import pytest

from support.recording import Recorder, make_config


@pytest.fixture
def recorder():
    """Records what the actions run; answers from its rules (default: success, no output)."""
    return Recorder(make_config(HOST="tgt1", NO_ISCSI="frontend"))
