"""Issue 23: a Ray address that is not one (``--ray "not a host"``, the plugin's field) is one
line, not Ray's ValueError traceback."""

from __future__ import annotations

import pytest

from ewc_fo.runtime.errors import ConfigError

pytest.importorskip("ray")


def test_an_address_that_is_not_one_is_a_config_error():
    from ewc_fo.distributed.ray_runner import _init_ray

    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at 'not a host'"):
        _init_ray("not a host")
