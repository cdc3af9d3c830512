"""Early answers to simple mistakes: a dataset name or label field that does not exist is
reported from one pymongo query of FiftyOne's ``datasets`` collection, before FiftyOne (and
torch) are imported, with "did you mean" for a near miss.

Only when the database is known without starting one: ``FIFTYONE_DATABASE_URI`` or
``database_uri`` in FiftyOne's config file, or FiftyOne's own local database service already
running (an open App, notebook or other command): the one FiftyOne would join, found as
FiftyOne finds it (:func:`running_service_uri`). When FiftyOne would have to start its
``mongod`` first, the checks run after FiftyOne loads, as before. Any failure here (no
pymongo, database down, another schema) is silent: the usual checks then give the answer.
"""

from __future__ import annotations

import difflib
import json
import os

from ewc_fo.runtime.errors import ConfigError

LABEL_TYPES = ("fiftyone.core.labels.Classification", "fiftyone.core.labels.Classifications")
#: fields an ewc-fo run writes that hold fo.Classifications (not image-level labels of the user's)
RUN_SUFFIXES = ("_classes",)
#: the command's --label-field (set by the CLI), checked with the dataset by :func:`early_check`
REQUESTED_FIELD: str | None = None


#: the arguments FiftyOne's database service runs with (fiftyone/core/service.py, MultiClientService)
SERVICE_ARGS = ["--51-service", "db", "--multi"]


def _config() -> dict:
    path = os.environ.get("FIFTYONE_CONFIG_PATH") or os.path.join(os.path.expanduser("~"), ".fiftyone", "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
        return cfg if isinstance(cfg, dict) else {}
    except (OSError, ValueError):
        return {}


def configured_uri() -> str | None:
    """The database URI set in the environment or FiftyOne's config file, or None."""
    return os.environ.get("FIFTYONE_DATABASE_URI") or _config().get("database_uri") or None


def running_service_uri() -> str | None:
    """The URI of the local database FiftyOne would use without a URI, if it runs already.

    FiftyOne joins any process of this user running its database service (``--51-service db
    --multi``, whatever its database folder) and talks to the port its ``mongod`` child listens
    on; ``FIFTYONE_PRIVATE_DATABASE_PORT`` is that port when a parent FiftyOne process found it.
    None when no service runs: FiftyOne would start one (seconds), so the early check waits.
    """
    port = os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT")
    if port and port.isdigit():
        return f"mongodb://127.0.0.1:{int(port)}"
    import psutil  # a FiftyOne dependency; light

    me = psutil.Process().username()
    n = len(SERVICE_ARGS)
    for proc in psutil.process_iter(["cmdline", "username"]):
        try:
            cmd = proc.info["cmdline"] or []
            if proc.info["username"] != me or not any(cmd[i : i + n] == SERVICE_ARGS for i in range(len(cmd))):
                continue
            for child in proc.children(recursive=True):
                for conn in child.net_connections(kind="tcp"):
                    if not conn.raddr and conn.status == psutil.CONN_LISTEN:
                        host = conn.laddr.ip if conn.laddr.ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
                        return f"mongodb://{'[' + host + ']' if ':' in host else host}:{conn.laddr.port}"
        except psutil.Error:
            continue
    return None


def database_uri() -> str | None:
    """Where the early check may ask: the configured database, else a running local service."""
    if configured_uri():
        return configured_uri()
    try:
        return running_service_uri()
    except Exception:  # noqa: BLE001 - no psutil, no /proc: the usual checks answer
        return None


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def run_output_fields(names: list[str]) -> set[str]:
    """Fields that are an ewc-fo run's own output (``P_classes`` beside ``P_mask``)."""
    have = set(names)
    return {n for n in names for s in RUN_SUFFIXES if n.endswith(s) and n[: -len(s)] + "_mask" in have}


def label_field_choices(fields: dict[str, str | None]) -> list[str]:
    """Fields holding image-level labels (name -> embedded document type), the tool's own
    output fields left out."""
    fits = [k for k, t in fields.items() if t in LABEL_TYPES or (t or "").rsplit(".", 1)[-1] in
            ("Classification", "Classifications")]
    mine = run_output_fields(list(fields))
    return [k for k in fits if k not in mine]


def early_check(dataset: str, label_field: str | None = None, timeout_s: float = 2.0) -> None:
    """Raise ConfigError for a dataset or label field (default: the command's --label-field)
    that is not there; otherwise return (also when the database cannot be asked quickly)."""
    label_field = label_field or REQUESTED_FIELD
    uri = database_uri()
    if not uri:
        return
    try:
        import pymongo

        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000), connect=True)
        try:
            db = client[os.environ.get("FIFTYONE_DATABASE_NAME") or _config().get("database_name") or "fiftyone"]
            doc = db.datasets.find_one({"name": dataset}, {"sample_fields.name": 1,
                                                          "sample_fields.embedded_doc_type": 1})
            names = None if doc else [d["name"] for d in db.datasets.find({}, {"name": 1})]
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - the usual checks answer instead
        return
    if doc is None:
        raise ConfigError(f"no FiftyOne dataset named {dataset!r}{did_you_mean(dataset, names)} "
                          f"(datasets: {', '.join(sorted(names)) or 'none'})")
    if label_field is None:
        return
    fields = {f.get("name"): f.get("embedded_doc_type") for f in doc.get("sample_fields") or []}
    choices = label_field_choices(fields)
    if label_field not in fields:
        hint = did_you_mean(label_field, choices)
        raise ConfigError(f"no field {label_field!r} on this dataset ({dataset!r}){hint} (fields with image-level "
                          f"labels: {', '.join(choices) or 'none; ewc-fo create makes one'})")
