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


class AlreadyLabeledError(ConfigError):
    """A finished run with this prefix already labeled the whole view."""

    kind = "already_labeled"


class CheckpointError(ConfigError):
    """A checkpoint file is corrupt, unsafe or does not fit the model."""

    kind = "checkpoint"


class SampleTimeoutError(EWCError):
    """One sample used up its time budget (``Limits.sample_timeout_s``); the run moves on."""

    kind = "timeout"


class FlatImageError(ImageLoadError):
    """The image is one flat colour: there is nothing to explain or segment."""

    kind = "flat_image"


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than ewc-fo labels at full size (also PIL decompression bombs)."""

    kind = "image_too_large"


class TooManyClassesError(EWCError):
    """A sample has more image-level labels than ``Limits.max_classes``."""

    kind = "too_many_classes"


class RunInProgressError(EWCError):
    """Another live process holds the lease on this run prefix (``ewc_fo.fo.runs.claims``)."""

    kind = "run_in_progress"


class SchemaBusyError(RunInProgressError):
    """Another process kept the dataset's schema lock past the wait."""

    kind = "schema_busy"


class ClaimLostError(EWCError):
    """This run's lease expired and another process took it: stop writing."""

    kind = "claim_lost"


class DatabaseUnavailableError(EWCError):
    """The FiftyOne database cannot be reached (stopped, killed or unreachable)."""

    kind = "database_unavailable"


class InternalError(EWCError):
    """An unexpected error on one sample (a bug, or the environment: a model, the disk, a
    device). Alone, it fails that sample; several in a row stop the run
    (:class:`EnvironmentFaultError`) and fail none of them."""

    kind = "internal"


class EnvironmentFaultError(EWCError):
    """Samples kept failing alike with internal errors: the run's fault, not theirs. The
    run stopped without marking them, so the next run redoes them."""

    kind = "environment"
