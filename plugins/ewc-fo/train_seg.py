"""Train a fast segmentation model on a run's trusted masks (``ewc_fo.train_segmenter``, issue 21).

Thin like the other operators: the form checks every value as it is filled (the run, the
trust rules' per-class counts, the numbers, the output file), ``execute`` reads every param
up front and makes the one SDK call; progress goes to ``ctx.set_progress``. Delegated by
default: training takes minutes on a CPU (docs/distill.md).
"""

from __future__ import annotations

import os

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import FormError, Progress, call, one_line_errors
from .forms import checked_number, error, invalid, runs, to_number

#: targets up to this many samples get the per-class trust check in the form itself
FORM_TRUST_MAX = 20_000

#: the form's numbers: (name, kind, low, high, default, label, description)
NUMBERS = (
    ("min_confidence", float, 0, 1, 0.0, "Min confidence",
     "Leave out a class's pixels on images where its confidence is below this"),
    ("min_samples", int, 1, None, 3, "Min trusted images per class", "Fewer is a one-line error naming the class"),
    ("input_size", int, 32, 2048, 320, "Input size", "Square side images are resized to (a multiple of 32)"),
    ("epochs", int, 1, None, 20, "Decoder epochs", "Epochs of the decoder on cached encoder features"),
    ("tune_epochs", int, 0, None, 0, "Encoder tuning epochs", "Epochs tuning the encoder's last stage too"),
    ("seed", int, None, None, 0, "Seed", "Seed of the initialisation, order and flips"),
)


def read_numbers(params: dict) -> dict:
    """Every number of the form, checked (a :class:`FormError` naming the first bad one)."""
    out = {}
    for name, kind, lo, hi, default, *_ in NUMBERS:
        v = to_number(params.get(name), kind, name, lo, hi)
        out[name] = default if v is None else v
    if out["input_size"] % 32:
        raise FormError(f"input_size: must be a multiple of 32, got {out['input_size']}")
    return out


def check_out(out: str | None, overwrite: bool) -> str:
    """The model file to write: a .safetensors path, not a folder, not an existing file unless asked."""
    if not out:
        raise FormError("out: a model file path is needed")
    out = os.path.expanduser(str(out))
    if not out.endswith(".safetensors"):
        raise FormError("out: the model path must end with .safetensors")
    if os.path.isdir(out):
        raise FormError(f"out: {out} is a folder; give a file name")
    if os.path.exists(out) and not overwrite:
        raise FormError(f"out: {out} exists; tick 'overwrite' to replace it")
    return out


def check_device(device: str) -> str:
    from ewc_fo.commands._checks import DEVICE_RE

    if not DEVICE_RE.match(device or ""):
        raise FormError(f"device: {device!r} is not a device: use cpu, cuda, cuda:N or mps")
    return device


class TrainSegmenter(foo.Operator):
    """Train a segmentation model on a run's trusted masks (``ewc_fo.train_segmenter``)."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="train_segmenter", label="EWC: train a segmentation model on a run's trusted masks",
            icon="model_training", dynamic=True, allow_immediate_execution=True,
            allow_delegated_execution=True, default_choice_to_delegated=True,
        )

    def resolve_execution_options(self, ctx):
        return foo.ExecutionOptions(allow_immediate_execution=True, allow_delegated_execution=True,
                                    default_choice_to_delegated=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Learn from")
        have = runs(ctx.dataset)
        if not have:
            error(inputs, "run_missing", "No ewc-fo run on this dataset",
                  "Run 'Compute EWC explanations and masks' first: its masks teach the model.")
            return types.Property(inputs, view=types.View(label="EWC: train segmentation model"))
        choices = types.DropdownView()
        for r in have:
            choices.add_choice(r, label=r)
        run_prop = inputs.enum("run", choices.values(), default=have[0], required=True, label="Run (prefix)",
                               description="The finished run whose masks teach", view=choices)
        run = ctx.params.get("run") or have[0]
        from ewc_fo.fo.runs.plan import default_output_dir

        default_out = os.path.join(os.path.dirname(default_output_dir(ctx.dataset, "x")), f"seg_{run}.safetensors")
        out_prop = inputs.str("out", default=default_out, required=True, label="Model path",
                              description="Where to write the model (.safetensors; metadata in <path>.json)")
        inputs.bool("overwrite", default=False, label="Overwrite", description="Replace the model file if it exists")
        try:
            check_out(ctx.params.get("out", default_out), bool(ctx.params.get("overwrite")))
        except FormError as e:
            invalid(out_prop, str(e).split(": ", 1)[-1])
        props, got = {}, {}
        for name, kind, lo, hi, default, label, description in NUMBERS:
            props[name] = (inputs.float if kind is float else inputs.int)(
                name, default=default, label=label, description=description)
            got[name] = checked_number(ctx, props[name], name, kind, lo, hi)
        if got["input_size"] is not None and got["input_size"] % 32:
            invalid(props["input_size"], "must be a multiple of 32")
        dev_prop = inputs.str("device", default="cpu", label="Device", description="cpu, cuda, cuda:N or mps")
        try:
            check_device(ctx.params.get("device", "cpu"))
        except FormError as e:
            invalid(dev_prop, str(e).split(": ", 1)[-1])
        # the run and its trust, as the CLI checks them before torch: one line on the run field.
        # Counting trusted images per class reads a few fields of every sample: on a target too
        # big to do that at each keystroke, the form checks the run alone and execute the rest
        # (still before any image is read)
        from ewc_fo.fo.train_seg import check_run, read_training_set
        from ewc_fo.runtime.errors import ConfigError

        mc = got["min_confidence"] if got["min_confidence"] is not None else 0.0
        ms = got["min_samples"] if got["min_samples"] is not None else 3
        try:
            view = ctx.target_view()
            if view.count() <= FORM_TRUST_MAX:
                read_training_set(view, run, min_confidence=mc, min_samples_per_class=ms)
            else:
                check_run(ctx.dataset, run)
        except ConfigError as e:
            invalid(run_prop, str(e).splitlines()[0])
        return types.Property(inputs, view=types.View(label="EWC: train segmentation model"))

    @one_line_errors
    def execute(self, ctx):
        view = ctx.target_view()
        run = ctx.params.get("run") or "ewc"
        nums = read_numbers(ctx.params)
        out = check_out(ctx.params.get("out"), bool(ctx.params.get("overwrite")))
        device = check_device(ctx.params.get("device") or "cpu")
        from ewc_fo.commands._checks import check_device as device_exists
        from ewc_fo.fo.train_seg import train_segmenter
        from ewc_fo.models.seg_train import SegTrainConfig

        device_exists(device)
        cfg = SegTrainConfig(input_size=nums["input_size"], epochs=nums["epochs"],
                             tune_epochs=nums["tune_epochs"], seed=nums["seed"])
        _, meta = train_segmenter(view, run=run, out=out, min_confidence=nums["min_confidence"],
                                  min_samples_per_class=nums["min_samples"], config=cfg, device=device,
                                  verbose=False, progress=Progress(ctx, "training"))
        n = meta["samples"]
        return {"out": out, "classes": meta["class_names"], "n_samples": meta["n_samples"], "samples": n,
                "train_seconds": meta["train_seconds"],
                "result": f"model saved to {out}: {meta['n_samples']} images of run {run!r} ({n['corrected']} "
                          f"corrected, {n['accepted']} accepted, {n['by_confidence']} by confidence) in "
                          f"{meta['train_seconds']} s"}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("out", label="Model")
        outputs.str("result", label="Result")
        outputs.str("error", label="Error")
        return types.Property(outputs)

    def __call__(self, samples, run: str, out: str, *, min_confidence=None, min_samples=None, input_size=None,
                 epochs=None, tune_epochs=None, seed=None, device=None, overwrite=False, delegate=False):
        return call(self.uri, samples, dict(run=run, out=out, min_confidence=min_confidence,
                                            min_samples=min_samples, input_size=input_size, epochs=epochs,
                                            tune_epochs=tune_epochs, seed=seed, device=device,
                                            overwrite=overwrite), delegate)


OPERATORS = [TrainSegmenter]
