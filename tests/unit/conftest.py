"""Fixtures of the unit tier: actions run against a recording stand-in."""
import pytest

from oneiscsi import config
from support.recording import Recorder


def make_config(**values: str):
    """A Config of the defaults with some keys set, as ONE_ISCSI_<KEY> would."""
    return config.load(env={f"ONE_ISCSI_{key}": value for key, value in values.items()})


@pytest.fixture
def recorder():
    """Records what the actions run; answers from its rules (default: success, no output)."""
    return Recorder(make_config(HOST="tgt1", NO_ISCSI="frontend"))
