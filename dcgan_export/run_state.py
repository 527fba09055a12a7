"""What a run directory's state.json says about its generator.keras.

Shared by the trainer, which writes state.json, and by export, which records the iteration in
the ONNX metadata; it lives here because the trainer may import dcgan_export, not the reverse.
"""

from __future__ import annotations


def generator_iteration(state: dict) -> int | None:
    """The iteration generator.keras was saved at, or None if unknown. A resumed run keeps the
    previous finish's generator there until it finishes itself; a state.json written before
    generator_iteration existed says only that a run finished (and so saved it) at its iteration."""
    saved = state.get("generator_iteration")
    if not isinstance(saved, int) and state.get("finished") is True:
        saved = state.get("iteration")
    return saved if isinstance(saved, int) else None
