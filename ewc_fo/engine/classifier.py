"""Deprecated import path (one release): the classifier moved to :mod:`ewc_fo.models.classifier`."""

from ewc_fo.models.classifier import *  # noqa: F403
from ewc_fo.models.classifier import Classifier, describe  # noqa: F401
from ewc_fo.models.registry import list_backbones, load_classifier  # noqa: F401
