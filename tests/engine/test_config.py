"""One place turns named options into the method's settings; old import paths keep working."""

import pytest

from ewc_fo.engine.config import EWCConfig, config_from_options
from ewc_fo.runtime.errors import ConfigError


def test_options_set_only_what_is_given():
    cfg = config_from_options(explainers=["gradcam", "layercam"], fg_threshold=0.7, temperature=2.0,
                              objectness_labels=0.3, refine=None)
    base = EWCConfig()
    assert cfg.explainers == ("gradcam", "layercam")
    assert cfg.prompts.fg_threshold == 0.7 and cfg.prompts.bg_threshold == base.prompts.bg_threshold
    assert cfg.score.temperature == 2.0 and cfg.objectness_labels == 0.3
    assert cfg.refine == base.refine and cfg.mask_weight == base.mask_weight
    assert config_from_options() == base


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="unknown option"):
        config_from_options(fg_treshold=0.5)
    with pytest.raises(ConfigError, match="bg_threshold < box_threshold"):
        config_from_options(fg_threshold=0.2)


def test_old_import_paths_still_work():
    from ewc_fo.engine.classifier import load_classifier
    from ewc_fo.engine.pipeline import EWC
    from ewc_fo.engine.pipeline import EWCConfig as OldConfig
    from ewc_fo.engine.segmenters import GrabCutSegmenter, create_segmenter
    from ewc_fo.models.registry import load_classifier as new_load
    from ewc_fo.segmenters import create_segmenter as new_create

    assert load_classifier is new_load and create_segmenter is new_create
    assert OldConfig is EWCConfig and EWC.__module__ == "ewc_fo.engine.pipeline"
    assert isinstance(create_segmenter("grabcut"), GrabCutSegmenter)
