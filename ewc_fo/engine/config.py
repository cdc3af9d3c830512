"""The method's settings (:class:`EWCConfig`): every threshold and switch a run records and resumes with."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ewc_fo.engine.prompts import PromptConfig
from ewc_fo.engine.refine import check_method
from ewc_fo.engine.scoring import (
    ScoreConfig,
)
from ewc_fo.runtime.errors import ConfigError
from ewc_fo.runtime.images import MIN_SIDE
from ewc_fo.runtime.limits import check_input_size

#: explainers used when none are named: CAMs from two layers plus a captum attribution.
#: EigenCAM is opt-in: it is class-agnostic, so on multi-class images every class gets the
#: same map (measured on voc_dev: fused + GrabCut 36.2% with it, 37.8% without; docs/method.md)
DEFAULT_EXPLAINERS = ("gradcam", "gradcampp", "xgradcam", "layercam", "input_x_gradient")
#: the proposal grid a segmenter that can propose gets by default (``EWCConfig.proposal_grid``):
#: 8 x 8 cells, only those with evidence prompted, a point inside a kept object skipped
DEFAULT_PROPOSAL_GRID = 8


@dataclass(frozen=True)
class EWCConfig:
    """Every knob of the method; recorded with each run so masks are traceable."""

    explainers: tuple[str, ...] = DEFAULT_EXPLAINERS
    explain_size: int | None = None  # square side fed to the classifier; None = classifier's
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    max_side: int = 640  # maps, prompts and segmentation run at most at this size
    use_quality: bool = True  # prompt the segmenter with each explainer's map to score it
    score: ScoreConfig = field(default_factory=ScoreConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    seed: int = 0
    keep_explainer_masks: bool = False  # keep each explainer's own mask (ablations, benchmarks)
    #: score explainers on the segmenter's cheap draft masks (GrabCut only; SAM2 has one mode).
    #: Off by default: the masks also vote in the fused map (mask_weight), where draft
    #: masks cost 1.5 mIoU points on voc_dev (docs/method.md)
    draft_quality: bool = False
    #: fuse ``(1 - m) * map_k + m * mask_k``: each explainer votes with its map and with the
    #: mask its map prompted, so the fused map carries the segmenter's object boundaries
    mask_weight: float = 0.5
    #: 0..1: how much each explainer's map of a class is reduced where another class of the
    #: image is stronger (:func:`compete`); 0 keeps every map as it is
    class_competition: float = 0.7
    #: confidence = agreement^a * sqrt(quality * mass_inside)^(1 - a): how much of it is agreement
    confidence_agreement: float = 2 / 3
    #: an image's confidence from its classes': "product" (it is right only if every class is:
    #: each image-level class is one more chance of a wrong mask; method.md v0.8) or "min" (v0.7)
    image_confidence: str = "product"
    #: refinement of the final masks with the fused map and the image (``refine.py``):
    #: "none", "crf" (needs pydensecrf) or "pamr" (torch)
    refine: str = "none"
    #: beta of refine.py: how much the segmenter's mask (vs the fused map) counts in the evidence
    refine_mask_weight: float = 0.5
    #: alpha in [0, 1]: every map is multiplied by ``(1 - alpha) + alpha * O`` with ``O`` the
    #: class-agnostic objectness of each pixel (``objectness.py``); 0 = no objectness cue
    objectness: float = 0.0
    #: t in [0, 1): when > 0, the label map is drawn from objectness instead of the masks' union:
    #: a pixel whose objectness reaches t goes to the class with the most probability-weighted
    #: fused evidence there, every other pixel is background (the saliency + CAM pseudo-label of
    #: weakly supervised segmentation); each class's mask is its share of that map
    objectness_labels: float = 0.0
    #: n > 0: SAM proposals labelled by the maps (``proposals.py``; a segmenter with
    #: ``propose``, e.g. sam-onnx): point prompts on an n x n grid where some class has
    #: evidence, each whole-object mask given the class whose fused evidence it holds.
    #: None = :data:`DEFAULT_PROPOSAL_GRID` when the segmenter can propose, else off (0):
    #: on voc_dev's first 50 images it lifted fused + MobileSAM from 35% to 50% mIoU (method.md v0.6)
    proposal_grid: int | None = None
    #: a proposal's mean (probability-weighted) fused evidence must reach this for a class,
    #: else it is background; grid points need it too
    proposal_threshold: float = 0.3
    #: objectness (U²-Net-p) as the proposals' second vote: a proposal's score for its class is
    #: the mean of its mean fused evidence and its mean objectness, and pixels no proposal
    #: covers take the labels from objectness at ``proposal_threshold`` (method.md v0.7).
    #: None = on where the U²-Net-p file is installed; False = the maps alone (v0.6)
    proposal_objectness: bool | None = None

    def __post_init__(self) -> None:
        # a comma-separated string is accepted for convenience ("gradcam,eigencam")
        if isinstance(self.explainers, str):
            names = tuple(n.strip() for n in self.explainers.split(",") if n.strip())
            object.__setattr__(self, "explainers", names)
        if isinstance(self.scales, (int, float)):
            object.__setattr__(self, "scales", (float(self.scales),))
        if not self.scales or min(self.scales) <= 0:
            raise ConfigError(f"scales must be positive numbers, got {self.scales!r}")
        if self.explain_size is not None:
            try:
                check_input_size(self.explain_size, "explain_size")
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if (self.proposal_grid is not None and self.proposal_grid < 0) or not 0 < self.proposal_threshold < 1:
            raise ConfigError(f"need proposal_grid >= 0 and 0 < proposal_threshold < 1, got "
                              f"{self.proposal_grid}, {self.proposal_threshold}")
        if not 0 <= self.objectness_labels < 1:
            raise ConfigError(f"objectness_labels must be in [0, 1), got {self.objectness_labels}")
        for name in ("mask_weight", "class_competition", "refine_mask_weight", "objectness"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        check_method(self.refine)
        if self.image_confidence not in ("product", "min"):
            raise ConfigError(f"image_confidence must be 'product' or 'min', got {self.image_confidence!r}")
        if int(self.max_side) < MIN_SIDE:
            raise ConfigError(f"max_side must be >= {MIN_SIDE}, got {self.max_side}")

    def to_dict(self) -> dict:
        return asdict(self)


#: the settings a run can take by name: the CLI's ``label`` flags, the plugin's form, the benchmarks
OPTIONS = ("explainers", "explain_size", "fg_threshold", "bg_threshold", "box_threshold", "temperature",
           "mask_weight", "class_competition", "refine", "objectness", "objectness_labels",
           "proposal_grid", "proposal_threshold", "proposal_objectness")


def config_from_options(base: EWCConfig | None = None, **options) -> EWCConfig:
    """An :class:`EWCConfig` from named options (``None`` = keep the default), checked as
    the dataclasses check them: one place turns flags and form values into the method's settings."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    given = {k: v for k, v in options.items() if v is not None}
    cfg = base or EWCConfig()
    prompts = {k: given.pop(k) for k in ("fg_threshold", "bg_threshold", "box_threshold") if k in given}
    if prompts:
        cfg = replace(cfg, prompts=replace(cfg.prompts, **prompts))
    if "temperature" in given:
        cfg = replace(cfg, score=replace(cfg.score, temperature=given.pop("temperature")))
    if "explainers" in given:
        given["explainers"] = tuple(given["explainers"])
    return replace(cfg, **given)
