"""Shared engine fixtures (tiny classifiers, photos) for this room."""
from tests._engine_fixtures import *  # noqa: F403
from tests._engine_fixtures import _one_thread  # noqa: F401
