"""The one part of a GAN step that differs per Keras backend: taking a gradient and applying it.

The step's math (``trainer/gan.py``) is written once in ``keras.ops`` and calls these functions
where it needs a gradient (or a pullback, to take one later), the way Keras 3's custom-train-step
guides split it: TensorFlow records on a ``GradientTape``; JAX differentiates a pure function, so
the variables' values go in as arguments and whatever the forward pass assigns (BatchNorm
statistics, random-seed states) comes back out as data and is assigned afterwards, inside the
step's ``StatelessScope`` (``trainer/jax_step.py``). Both support differentiating through a gradient (R1's double backprop).
An optimizer applies its update in place on TensorFlow and through ``stateless_apply`` on JAX (a
loss-scale optimizer's in-place update branches on traced values, which JAX cannot trace).

Also here: how many replicas share a step, and which one this is (TensorFlow's MirroredStrategy
runs the step once per device; JAX runs one program over the global batch, so 1 and 0).
"""

from __future__ import annotations

from typing import Callable

import keras
# Keras exports StatelessScope but not the way to find the active one; fit() on JAX opens one per step.
from keras.src.backend.common.stateless_scope import get_stateless_scope


def value_and_grad(fn: Callable, variables: list):
    """``fn() -> (loss, aux)``; returns ``(loss, aux, gradients of loss w.r.t. variables)``."""
    if keras.backend.backend() == "jax":
        return _jax_grad(fn, list(variables))
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss, aux = fn()
    return loss, aux, tape.gradient(loss, variables)


def value_and_vjp(fn: Callable, variables: list):
    """``fn() -> (out, aux)``; returns ``(out, aux, pullback)``: ``pullback(cotangent)`` is the
    gradient of ``sum(out * cotangent)`` w.r.t. ``variables``, taken later (after other updates),
    with the forward pass's intermediate values kept until then."""
    if keras.backend.backend() == "jax":
        return _jax_grad(fn, list(variables), vjp=True)
    import tensorflow as tf

    tape = tf.GradientTape()
    with tape:
        out, aux = fn()
    return out, aux, lambda cotangent: tape.gradient(out, variables, output_gradients=cotangent)


def input_value_and_grad(fn: Callable, x):
    """``fn(x) -> (scalar, aux)``; returns ``(scalar, aux, gradient w.r.t. x)``, itself differentiable."""
    if keras.backend.backend() == "jax":
        return _jax_grad(fn, None, x)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y, aux = fn(x)
    return y, aux, tape.gradient(y, x)


def apply_gradients(optimizer, grads: list, variables: list) -> None:
    """``optimizer.apply(grads, variables)``, the optimizer's state and the variables updated."""
    if keras.backend.backend() != "jax":
        optimizer.apply(grads, variables)
        return
    new_values, new_state = optimizer.stateless_apply([v.value for v in optimizer.variables], grads,
                                                      [v.value for v in variables])
    for variable, value in zip([*variables, *optimizer.variables], [*new_values, *new_state]):
        variable.assign(value)


class _RecordingScope(keras.StatelessScope):
    """A StatelessScope that starts from given values and remembers which variables were assigned."""

    def __init__(self, values: dict):
        super().__init__()
        self.state_mapping = values
        self.assigned: dict = {}

    def add_update(self, update):
        self.assigned[id(update[0])] = update[0]
        super().add_update(update)


def _jax_grad(fn: Callable, variables: list | None, x=None, vjp: bool = False):
    """Differentiate ``fn()`` w.r.t. the values of ``variables``, or ``fn(x)`` w.r.t. ``x``; every
    other variable is read from the enclosing StatelessScope (or the variable itself). With
    ``vjp``, the gradients' place holds the pullback instead."""
    import jax

    outer = get_stateless_scope()
    inherited = dict(outer.state_mapping) if outer is not None else {}
    assigned: dict = {}

    def pure(values):
        mapping = dict(inherited)
        if variables is not None:
            mapping.update({id(v): value for v, value in zip(variables, values)})
        scope = _RecordingScope(mapping)
        with scope:
            out, aux = fn() if variables is not None else fn(values)
        assigned.update(scope.assigned)
        return out, (aux, {key: scope.state_mapping[key] for key in scope.assigned})

    start = [v.value for v in variables] if variables is not None else x
    if vjp:
        out, pullback, (aux, updates) = jax.vjp(pure, start, has_aux=True)
        grads = lambda cotangent: pullback(cotangent)[0]  # noqa: E731
    else:
        (out, (aux, updates)), grads = jax.value_and_grad(pure, has_aux=True)(start)
    for key, value in updates.items():
        assigned[key].assign(value)  # into the enclosing scope, or the variable itself
    return out, aux, grads


def num_replicas() -> int:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync
    return 1


def replica_index() -> int:
    """Which replica this is (0 with one device, and on JAX)."""
    if num_replicas() == 1:
        return 0
    import tensorflow as tf

    return tf.distribute.get_replica_context().replica_id_in_sync_group


def replica_rows(draw: Callable, n):
    """``draw(rows)`` for this replica's ``n`` rows of the global batch: every replica draws the
    whole global batch from the same seed and keeps its own slice, so replicas get distinct
    noise while the random state stays one shared value (one device: just ``draw(n)``)."""
    replicas = num_replicas()
    if replicas == 1:
        return draw(n)
    replica = replica_index()
    return draw(n * replicas)[replica * n:(replica + 1) * n]
