"""What a label run reports: its summary, counts by outcome, a progress bar."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ewc_fo.runtime.errors import EnvironmentFaultError, InternalError

ProgressFn = Callable[[int, int], None]


@dataclass
class LabelSummary:
    """What a run did: counts by outcome, errors by kind, time, and the triage views."""

    prefix: str
    total: int
    processed: int = 0
    succeeded: int = 0
    skipped_done: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    write_seconds: float = 0.0
    views: list[str] = field(default_factory=list)
    segmenter: str = ""
    output_dir: str = ""
    note: str = ""

    def __str__(self) -> str:
        lines = [
            f"ewc-fo run '{self.prefix}' ({self.segmenter}): {self.succeeded} labeled, "
            f"{sum(self.errors.values())} failed, {self.skipped_done} already done, "
            f"of {self.total} samples in {self.seconds:.1f}s",
        ]
        for kind, n in sorted(self.errors.items()):
            lines.append(f"  failed ({kind}): {n}")
        if self.views:
            lines.append("  triage views: " + ", ".join(self.views))
        if self.note:
            lines.append("  " + self.note)
        return "\n".join(lines)


def count_outcome(summary: LabelSummary, vals: dict) -> None:
    if "error" in vals:
        summary.errors[vals["error_kind"]] += 1
    else:
        summary.succeeded += 1


#: internal errors in a row after which a run stops: the environment is at fault, not the samples
INTERNAL_STREAK = 3


class FaultGuard:
    """Tells a sample's fault from the environment's, in the order results arrive.

    A sample that failed with an internal error is held back until the next result shows
    whose fault it was: anything else next (a success, a sample's own error) releases it
    as failed; :data:`INTERNAL_STREAK` in a row raise :class:`EnvironmentFaultError` and
    the held samples are never recorded, so the next run redoes them. :meth:`add` counts
    what it releases in the summary.
    """

    def __init__(self, summary: LabelSummary, limit: int = INTERNAL_STREAK):
        self.summary, self.limit, self.held = summary, limit, []

    def add(self, sid: str, vals: dict) -> list[tuple[str, dict]]:
        """The results to record now (possibly none, while a streak is open)."""
        if vals.get("error_kind") == InternalError.kind:
            self.held.append((sid, vals))
            if len(self.held) >= self.limit:
                last = " ".join(str(vals.get("error", "")).split())[:300]
                raise EnvironmentFaultError(
                    f"stopped after {len(self.held)} samples in a row failed with an internal error "
                    f"(last: {last}): the environment (a model file, the disk, a device) is at fault, "
                    "not the samples, so none of them was marked failed; fix it and run the same "
                    "command again to redo them"
                )
            return []
        return self._release([(sid, vals)])

    def release(self) -> list[tuple[str, dict]]:
        """At the run's end: a streak too short to blame the environment fails its samples."""
        return self._release([])

    def _release(self, more: list) -> list[tuple[str, dict]]:
        out, self.held = self.held + more, []
        for _, vals in out:
            count_outcome(self.summary, vals)
        return out


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def make_bar(total: int, enabled: bool, desc: str = "ewc-fo"):
    """A per-image bar with rate and ETA (tqdm), or one that shows nothing."""
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    # whole images in the count: a batch's stages move the bar by fractions of an image
    return tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")


class BatchProgress:
    """A run's bar and ``progress`` callback, moving inside a batch too.

    A batch of a few images takes tens of seconds on a CPU; the engine reports each finished
    stage with the share of the batch done (``EWC.on_stage``), and the bar moves by that
    share of the batch's images, held below the batch's end until its images are written.
    ``progress(done, total)`` stays per whole image; a callback with a
    ``stage(name, done, total)`` method (the App operator's) hears of the stages as well.
    """

    #: the part of a batch its stages may move the bar before its images are written
    HOLD = 0.9

    def __init__(self, bar, progress: ProgressFn | None, total: int):
        self.bar, self.progress, self.total = bar, progress, total
        self.images = 0  # images written
        self.shown = 0.0  # where the bar is
        self.base = self.size = 0

    def start_batch(self, size: int) -> None:
        self.base, self.size = self.images, size

    def stage(self, name: str, share: float) -> None:
        self._move(self.base + self.HOLD * min(1.0, max(0.0, share)) * self.size, stage=name)
        on_stage = getattr(self.progress, "stage", None)
        if callable(on_stage):
            on_stage(name, self.shown, self.total)

    def image(self) -> None:
        self.images += 1
        self._move(self.images, stage="written")
        if self.progress:
            self.progress(self.images, self.total)

    def end_batch(self) -> None:
        self._move(self.images)

    def _move(self, to: float, stage: str | None = None) -> None:
        to = min(float(self.total), to)
        if stage is not None:
            self.bar.set_postfix(stage=stage, refresh=False)
        if to > self.shown:  # never backwards
            self.bar.update(to - self.shown)
            self.shown = to
