"""Embed the generator in a Python program: 16 images from noise, no TensorFlow. Usage:
python examples/embed_python.py [MODEL.onnx] [OUT_DIR]   (OUT_DIR: also write noise.npy, pixels.npy)"""
import sys
from pathlib import Path
import numpy as np
from dcgan_export import Sampler
from dcgan_export.atomic import atomic_open
sampler = Sampler(sys.argv[1] if len(sys.argv) > 1 else None)  # None: the shipped models/generator.onnx
z, labels = sampler.noise(16, seed=0), sampler.cycle_labels(16)  # sample(16, seed=0)'s noise, and classes (i % K; None: unconditional)
pixels = sampler.generate_pixels(z, labels)  # uint8 [16, H, W] (or [16, H, W, 3]); generate(z, labels): float32
print(f"{sampler}: {len(pixels)} images {pixels.shape[1:]}, mean pixel {pixels.mean():.1f}")
for name, array in [("noise.npy", z), ("pixels.npy", pixels)] if len(sys.argv) > 2 else []:
    Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
    with atomic_open(Path(sys.argv[2]) / name) as f:
        np.save(f, array)
