"""Listing 1 of the CESPED paper: a benchmark entry as a PyTorch Dataset in a training loop.

The model here is deliberately simple (a small CNN regressing the rotation in the 6-D
representation of Zhou et al. 2019) to show the data flow; replace it with yours.

Example usage::

    python examples/listing1_training_loop.py                      # built-in synthetic entry
    python examples/listing1_training_loop.py --target TEST --steps 200 --out my_model.pt
    python examples/listing1_training_loop.py --benchmarkDir /data/cesped --target 10280

The trained weights are saved to ``--out`` (default ``examples_output/model_half<h>.pt``) for
``listing2_predictions.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cesped.particlesDataset import ParticlesDataset


class TinyPoseNet(torch.nn.Module):
    """Image (B, 1, N, N) -> rotation matrices (B, 3, 3) and a confidence in (0, 1)."""

    def __init__(self):
        super().__init__()
        layers, c = [], 1
        for width in (16, 32, 64, 64):
            layers += [torch.nn.Conv2d(c, width, 3, padding=1), torch.nn.BatchNorm2d(width),
                       torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            c = width
        self.features = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(c, 7)

    def forward(self, img):
        out = self.head(self.features(img))
        a, b = out[:, :3], out[:, 3:6]
        x = torch.nn.functional.normalize(a, dim=1)  # Gram-Schmidt on two predicted columns
        y = torch.nn.functional.normalize(b - (x * b).sum(1, keepdim=True) * x, dim=1)
        z = torch.cross(x, y, dim=1)
        return torch.stack([x, y, z], dim=-1), torch.sigmoid(out[:, 6])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="synth_6msm", help="entry name (ParticlesDataset.getCESPEDEntries())")
    p.add_argument("--halfset", type=int, default=0)
    p.add_argument("--benchmarkDir", default=None, help="where entries live (default: CESPED_BENCHMARK_DIR)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--out", default=None, help="where to save the model weights")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    ds = ParticlesDataset(args.target, args.halfset, benchmarkDir=args.benchmarkDir)
    print(ds)
    dl = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers,
                    persistent_workers=args.num_workers > 0)
    model = TinyPoseNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = 0
    while step < args.steps:
        for iid, img, (rotMat, xyShiftAngs, confidence), metadata in dl:
            # iid: particle ids; img: (B, 1, N, N); rotMat: (B, 3, 3) ground truth;
            # xyShiftAngs: (B, 2) in Å; confidence: (B,) how reliable the ground truth is
            pred_rot, _ = model(img)
            # Frobenius distance, weighted by the label confidence (ignores symmetry: fine for C1)
            loss = (confidence * ((pred_rot - rotMat) ** 2).sum((1, 2))).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 20 == 0 or step == 1:
                print(f"step {step:4d}  loss {loss.item():.3f}")
            if step >= args.steps:
                break
    out = Path(args.out or f"examples_output/model_half{args.halfset}.pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    print(f"saved {out}")
    return out


if __name__ == "__main__":
    main()
