"""``DCGAN.train_step`` as fit() calls it on JAX: stateless, with every variable's value passed in.

fit() on JAX jit-compiles ``train_step(state, data)`` and threads ``state`` (the values of the
model's trainable, non-trainable, optimizer and metric variables) from one step to the next. The
step's math is written against variables (``DCGAN.iteration``), so here it runs inside a
``StatelessScope`` that maps each variable to its value in ``state``: reads see those values,
assignments (optimizer updates, BatchNorm statistics, seed states, the average) are recorded,
and the new state is read back out. ``DCGAN.optimizer`` is an ``OptimizerPair``, so both
optimizers' variables are in ``state``.
"""

from __future__ import annotations

import keras


def stateless_train_step(model, state, data):
    references = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
                  model.metrics_variables)
    mapping = [(variable, value) for variables, values in zip(references, state)
               for variable, value in zip(variables, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.iteration(data)
    return logs, tuple([scope.get_current_value(v) for v in variables] for variables in references)
