"""The shipped generator against the quality goals of the model issue, on several noise seeds.

``dcgan eval`` measures one seed; a goal met on seed 0 alone may be luck, so this measures each
seed the same way (10,000 samples against the held-out digits) and says which goals hold.

``--classifier`` measures with another digit classifier (``python -m trainer.classifier --seed 2
--out OTHER.onnx``): a generator trained with ``--class-guidance`` was steered by a classifier of
the evaluator's recipe, so its figures should hold under one that played no part in it.

    .venv/bin/python benchmarks/shipped_quality.py [MODEL.onnx] [--seeds 0 1 2] [--n 10000] [--classifier C.onnx]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcgan_export.errors import DcganError  # noqa: E402
from dcgan_export.evaluate import Evaluator, evaluate_generator  # noqa: E402

# the goals: FID at most 3x the real-vs-real floor, every class >= 7%, score >= 9
FID_OVER_FLOOR, MIN_CLASS_SHARE, MIN_SCORE = 3.0, 0.07, 9.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default=None, help="ONNX generator [default: the shipped one]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--classifier", default=None, help="digit classifier ONNX [default: the shipped one]")
    args = parser.parse_args()
    evaluator = Evaluator(args.classifier)  # one reference computation for every seed
    rows = []
    for seed in args.seeds:
        r = evaluate_generator(args.model, n=args.n, seed=seed, evaluator=evaluator)
        rows.append({
            "seed": seed, "fid": round(r["fid"], 4), "fid_over_floor": round(r["fid"] / r["fid_floor"], 3),
            "min_class_share": r["min_class_share"], "classifier_score": round(r["classifier_score"], 3),
            "fid_goal": r["fid"] <= FID_OVER_FLOOR * r["fid_floor"],
            "class_goal": r["min_class_share"] >= MIN_CLASS_SHARE,
            "score_goal": r["classifier_score"] >= MIN_SCORE,
        })
    print(json.dumps({"model": r["model"], "classifier": str(evaluator.classifier_path), "n": args.n,
                      "fid_floor": round(r["fid_floor"], 4), "seeds": rows}, indent=2))


if __name__ == "__main__":
    try:
        main()
    except DcganError as exc:
        raise SystemExit(f"Error: {exc}") from None
