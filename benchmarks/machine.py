"""The line every speed figure is printed with: which CPU, which vector instructions, how many
cores. Training runs about 2.5x slower on an AVX2-only CPU than on one with AVX-512, so a figure
without its CPU says little."""

from __future__ import annotations

import os
import platform


def cpu_description() -> str:
    """e.g. "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz, AVX-512, 2 cores"."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        isa += f" (TensorFlow limited to {os.environ['ONEDNN_MAX_CPU_ISA']} by ONEDNN_MAX_CPU_ISA)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {isa}, {cores} cores"
