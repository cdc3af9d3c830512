"""FiftyOne tests need a private, throw-away database set before fiftyone is imported.

tests/conftest.py already does this for the whole suite; these defaults only matter when
tests/fo is collected on its own from another root.
"""

import os
import tempfile

os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="ewc-fo-db-"))
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
