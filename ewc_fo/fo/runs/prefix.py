"""The run prefix rule, without importing FiftyOne (the CLI checks it before anything loads)."""

from __future__ import annotations

import re

from ewc_fo.runtime.errors import ConfigError

PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can name sample fields (``<prefix>_mask``), else :class:`ConfigError`."""
    if not PREFIX_RE.match(prefix or ""):
        raise ConfigError(f"prefix {prefix!r} must start with a letter and use only letters, digits, _ "
                          "(at most 40 characters)")
    return prefix
