"""Write weights.safetensors for the mlp example: one float32 matrix, 100 MB by default.

python make_weights.py [--size-mb 100] [--seed 0]
"""

import argparse
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("weights.safetensors"))
    args = parser.parse_args()
    side = int(math.sqrt(args.size_mb * 1e6 / 4))  # 100 MB -> 5000 x 5000 float32
    rng = np.random.default_rng(args.seed)
    weights = rng.standard_normal((side, side), dtype=np.float32) / np.float32(math.sqrt(side))
    save_file({"weight": weights}, str(args.out))
    print(f"wrote {args.out} ({side}x{side} float32, {weights.nbytes / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
