"""Recipe: a Hugging Face image-classification dataset (an Image feature + a ClassLabel,
or a list of ClassLabels for multi-label).

SOURCE is a hub name (online), a ``save_to_disk`` folder, a parquet file or folder of
parquet files, or a local data folder (offline: set HF_DATASETS_OFFLINE=1).

    python recipes/hf.py beans AI-Lab-Makerere/beans --split train --max-samples 300
    HF_DATASETS_OFFLINE=1 python recipes/hf.py mine ./my_saved_dataset
"""

from __future__ import annotations

import argparse
import sys

from _pipeline import add_common_args, cli, finish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("source", help="hub name, save_to_disk folder, parquet file(s) or data folder")
    p.add_argument("--split", default="train")
    p.add_argument("--image-key", default=None, help="image column (default: the Image feature)")
    p.add_argument("--label-key", default=None, help="label column (default: the ClassLabel feature)")
    args = p.parse_args(argv)
    from ewc_fo.fo.io.importers import import_hf

    ds = import_hf(args.name, args.source, split=args.split, image_key=args.image_key,
                   label_key=args.label_key, label_field=args.label_field, media_dir=args.media_dir,
                   overwrite=args.overwrite, max_samples=args.max_samples)
    return finish(args, ds)


if __name__ == "__main__":
    sys.exit(cli(main))
