"""What a label run reports: its summary, counts by outcome, a progress bar."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

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
        return "\n".join(lines)


def count_outcome(summary: LabelSummary, vals: dict) -> None:
    if "error" in vals:
        summary.errors[vals["error_kind"]] += 1
    else:
        summary.succeeded += 1


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def make_bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="ewc-fo", dynamic_ncols=True)
