"""Typed errors: every failure a user can cause has its own class and a plain message."""

from __future__ import annotations


class EWCError(Exception):
    """Base class for all errors raised on purpose by ewc-fo."""

    #: short machine-readable kind, used to count failures in run summaries
    kind = "error"


class ImageLoadError(EWCError):
    """The image file is missing, unreadable, truncated or of an unsupported kind."""

    kind = "unreadable_image"


class UnknownClassError(EWCError):
    """A label names a class the classifier was not trained on."""

    kind = "unknown_class"


class NoLabelError(EWCError):
    """A sample has no image-level label to explain."""

    kind = "no_label"


class ConfigError(EWCError):
    """A parameter, explainer name, model or checkpoint cannot be used."""

    kind = "config"


class CheckpointError(ConfigError):
    """A checkpoint file is corrupt, unsafe or does not fit the model."""

    kind = "checkpoint"
