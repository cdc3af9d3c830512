"""What every operator shares: progress, execution options, Python calls, one-line errors."""

from __future__ import annotations

import contextlib
import functools
import os
import time

import fiftyone.operators as foo

#: targets up to this many samples default to immediate execution; larger ones to delegated
IMMEDIATE_MAX = 16


class FormError(ValueError):
    """A form value that cannot be used (e.g. not a number); its message names the field."""


def one_line_errors(execute):
    """Wrap ``Operator.execute``: ewc-fo's own errors and bad form values become one line.

    Immediate runs notify the App and return ``{"error": message, "error_type": class name}``
    (the output form shows it) instead of a traceback; delegated runs still fail, with the
    message. ``_call`` turns the result back into the ewc-fo exception for Python callers.
    """

    @functools.wraps(execute)
    def wrapper(self, ctx):
        from ewc_fo.runtime.errors import EWCError

        try:
            return execute(self, ctx)
        except (EWCError, FormError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if ctx.delegated:
                raise type(e)(msg) from None
            ctx.ops.notify(msg, variant="error")
            return {"error": msg, "error_type": type(e).__name__, "report": f"**Failed:** {msg}"}

    return wrapper


def secret(ctx, key: str) -> str | None:
    """A plugin secret (locally: the environment variable of that name), or None."""
    try:
        v = ctx.secrets[key]
    except Exception:  # no secrets backend: treat as unset
        v = None
    v = getattr(v, "value", v)  # first resolution may return the secret object
    return v or os.environ.get(key) or None


@contextlib.contextmanager
def hf_token(ctx):
    """Expose the plugin's ``HF_TOKEN`` secret to huggingface_hub for one call only.

    The value is never logged nor returned; a token already in the environment wins.
    """
    token = secret(ctx, "HF_TOKEN")
    if not token or os.environ.get("HF_TOKEN"):
        yield
        return
    os.environ["HF_TOKEN"] = token
    try:
        yield
    finally:
        os.environ.pop("HF_TOKEN", None)


class Progress:
    """``progress(done, total)`` for ewc_fo calls -> ``ctx.set_progress`` with a rate.

    Throttled (one update a second, plus the last one): delegated runs write each update
    to the database, immediate runs send it to the App.
    """

    #: seconds between two updates (the last one is always sent)
    EVERY = 1.0

    def __init__(self, ctx, what: str, every: float | None = None):
        self.ctx, self.what = ctx, what
        self.every = self.EVERY if every is None else every
        self.t0 = self.last = time.perf_counter()
        self.calls = 0
        self.high = 0.0  # the most done ever sent: the App's bar never goes back

    def __call__(self, done: int, total: int) -> None:
        self._send(done, total)

    def stage(self, name: str, done: float, total: int) -> None:
        """Inside a batch (``ewc_fo.label``): the bar moves by the batch's finished stages."""
        self._send(done, total, name)

    def _send(self, done: float, total: int, stage: str | None = None) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        self.calls += 1
        # a batch's stages may have moved it past the images written so far
        done = self.high = max(self.high, float(done))
        elapsed = max(now - self.t0, 1e-9)
        rate = done / elapsed
        frac = done / total if total else 1.0
        label = f"{self.what} {int(done)}/{total}, {rate:.2f} img/s"
        if 0 < done < total and rate > 0:  # the same ETA a terminal bar shows
            label += f", {_clock((total - done) / rate)} left"
        if stage:
            label += f" ({stage.replace('_', ' ')})"
        self.ctx.set_progress(progress=frac, label=label)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m:02d}:{s:02d}"


def finish(ctx) -> None:
    """Immediate runs refresh the App; delegated ones have no App to refresh.

    ``reload_dataset`` does not re-read the dataset's colour scheme (a label run adds class
    colours to it), so it is sent along as well.
    """
    if ctx.delegated:
        return
    ctx.trigger("reload_dataset")
    ctx.dataset.reload()
    scheme = ctx.dataset.app_config.color_scheme
    if scheme is not None and scheme.fields:
        ctx.trigger("set_color_scheme", {"color_by": scheme.color_by, "fields": list(scheme.fields)})


def target_size(ctx) -> int | None:
    try:
        return len(ctx.target_view())
    except Exception:
        return None


def execution_options(ctx, long_work: bool):
    """Delegated by default for long work on more than IMMEDIATE_MAX samples."""
    n = target_size(ctx) if long_work else 0
    return foo.ExecutionOptions(
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=bool(long_work and (n is None or n > IMMEDIATE_MAX)),
    )


def call(uri: str, samples, params: dict, delegate: bool = False):
    """Run an operator from Python on a dataset or view, as the App would; an ewc-fo error
    comes back as the ewc-fo exception it was."""
    import fiftyone as fo

    view = samples.view() if isinstance(samples, fo.Dataset) else samples
    params = {"view_target": "CURRENT_VIEW", **{k: v for k, v in params.items() if v is not None}}
    params = with_defaults(uri, view, params)
    result = foo.execute_operator(uri, ctx=dict(view=view, params=params, request_delegation=delegate)).result
    if isinstance(result, dict) and result.get("error_type"):
        from ewc_fo.runtime import errors
        cls = getattr(errors, result["error_type"], None)
        raise (cls if isinstance(cls, type) and issubclass(cls, Exception) else FormError)(result["error"])
    return result


def with_defaults(uri: str, view, params: dict) -> dict:
    """Fill in the form's defaults, as the App does before it submits a form."""
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params=dict(dataset_name=view._root_dataset.name, view=view._serialize(),
                                               params=dict(params)), operator_uri=uri)
    prop = foo.get_operator(uri).resolve_input(ctx)
    out = dict(params)
    for name, p in getattr(prop.type, "properties", {}).items():
        if name not in out and getattr(p, "default", None) is not None:
            out[name] = p.default
    return out


def md(text: str) -> str:
    """A plain multi-line summary as Markdown (no code view: it would fetch an editor online)."""
    head, *rest = text.splitlines()
    return "\n".join([head, ""] + [f"- {line.strip()}" for line in rest])
