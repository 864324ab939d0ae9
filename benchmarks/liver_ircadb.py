"""A liver model's Dice on the two IRCADb CTs, with and without the dark-tissue rule.

For the leave-one-out check of the liver recipe: train with
`scripts/train_starter_models.py --work W --tasks liver --ircadb 3Dircadb1.7` (IRCADb 1.17
held out), then score `W/liver/model.pt` here.

Usage: .venv/bin/python benchmarks/liver_ircadb.py --model W/liver/model.pt --out /tmp/li
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from livermets.datasets.ircadb import import_ircadb
from livermets.evaluate.cases import mask_overlap
from livermets.infer.liver import segment_liver
from livermets.io import read_image
from livermets.models.saved import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = load_model(args.model, expected_task="liver")
    scores = {}
    for name in ("3Dircadb1.7", "3Dircadb1.17"):
        imported = import_ircadb(SHARED / "ircadb" / name, args.out / name, overwrite=True)
        case = imported.cases[0]
        ct, reference = read_image(case.image), read_image(case.liver_mask).array > 0
        for rule in (True, False):
            found = segment_liver(model, ct.array, spacing=ct.spacing, dark_tissue_rule=rule)
            scores[f"{name}, rule {'on' if rule else 'off'}"] = mask_overlap(found, reference)
    print(json.dumps({"model": str(args.model), "scores": scores}, indent=2))


if __name__ == "__main__":
    main()
