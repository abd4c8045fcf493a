"""Listing 2 of the CESPED paper: predict poses and write them as a RELION star file.

A model trained on half-set ``h`` predicts the particles of half-set ``1-h``; the predictions
go to the dataset's metadata with ``updateMd`` and to a star file with ``saveMd``, which is
what ``cesped.evaluateEntry`` reads.

Example usage::

    python examples/listing1_training_loop.py --halfset 0          # trains, saves model_half0.pt
    python examples/listing2_predictions.py --model examples_output/model_half0.pt --halfset 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from listing1_training_loop import TinyPoseNet
from torch.utils.data import DataLoader

from cesped.particlesDataset import ParticlesDataset


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="weights saved by listing1_training_loop.py")
    p.add_argument("--target", default="synth_6msm")
    p.add_argument("--halfset", type=int, default=1, help="the half-set to predict")
    p.add_argument("--benchmarkDir", default=None)
    p.add_argument("--out", default=None, help="predictions star (default examples_output/preds_<h>.star)")
    p.add_argument("--num-workers", type=int, default=2)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = TinyPoseNet()
    model.load_state_dict(torch.load(args.model, weights_only=True))
    model.eval()
    ds = ParticlesDataset(args.target, args.halfset, benchmarkDir=args.benchmarkDir)
    dl = DataLoader(ds, batch_size=64, shuffle=False, num_workers=args.num_workers)
    with torch.no_grad():
        for iid, img, (rotMat, xyShiftAngs, confidence), metadata in dl:
            pred_rotmat, pred_conf = model(img)
            pred_shifts = torch.zeros(len(iid), 2)  # this model does not predict shifts
            ds.updateMd(ids=iid, angles=pred_rotmat, shifts=pred_shifts, confidence=pred_conf,
                        angles_format="rotmat")
    out = Path(args.out or f"examples_output/preds_{args.halfset}.star")
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.saveMd(out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
