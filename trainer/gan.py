"""The DCGAN as one ``keras.Model``: both networks, both optimizers, one ``train_step``.

``fit()`` drives it, so callbacks, distribution and mixed precision work the Keras way. One call
of ``train_step`` is one *iteration*: ``d_steps`` discriminator updates, then one generator update
(Algorithm 1 of Goodfellow et al., 2014). The last D update and the G update share their fake
images, as PyTorch's DCGAN example does: G's forward pass runs once, D updates on its images, and
G's loss on the same images through the updated D is pulled back through that kept forward pass.
That saves a G forward pass, about a ninth of the recipe networks' arithmetic per iteration; the
G update's noise is now the D update's, which D has just learnt to reject (docs/training.md,
"Speed", says what it did to quality).

The math is written once, in ``keras.ops``, for every backend; only taking a gradient differs
(``trainer/gradients.py``), and on JAX fit() hands the step every variable's value as data
(``trainer/jax_step.py``).

Why explicit variable lists: the recipe this comes from freezes the discriminator inside a
combined model with ``discriminator.trainable = False`` and relies on the order of its
``compile()`` calls to keep the flag from applying to the discriminator's own updates; its author
was confused by it, and so is every reader. Here each update differentiates and applies to
exactly one network's ``trainable_variables``, so no flag or call order can leak an update
across networks (tests/test_train_step.py::test_each_update_changes_only_its_own_network proves
it bit for bit).

Every generator forward pass goes through ``subpixel_forward.generator_forward``: the same
function and gradients as calling the generator, with its upsample + convolve pairs done as the
exact sub-pixel convolution (most of the step's arithmetic is in the generator). Every
discriminator pass goes through ``dropout.discriminator_forward``: its Dropout masks come from a
counter-based hash, not the backend's generator (the same bits on every backend, at a fraction
of the cost).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import keras
from keras import ops

from .augment import augment
from .dropout import discriminator_forward
from .gradients import (apply_gradients, input_value_and_grad, num_replicas, replica_rows, value_and_grad,
                        value_and_vjp)
from .guidance import guidance_loss
from .subpixel_forward import generator_forward


def global_share(replica_mean):
    """A loss averaged over this replica's batch, as its share of the mean over the global batch:
    the optimizer sums gradients across replicas, so each replica's term is divided by their
    count (one device, or JAX, which runs one program over the global batch: unchanged). Every
    loss term goes through here."""
    return replica_mean / num_replicas()


class Fakes(NamedTuple):
    """G's images (and their classes, or None) with the pullback of its forward pass."""

    images: Any
    labels: Any
    pullback: Callable


class OptimizerPair:
    """D's and G's optimizers as the one ``model.optimizer`` that fit() knows of. On JAX, fit()
    threads ``model.optimizer.variables`` through every step and writes them back at the end;
    it must see both optimizers' state, not one."""

    built = True

    def __init__(self, d_optimizer, g_optimizer):
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer

    @property
    def variables(self) -> list:
        return [*self.d_optimizer.variables, *self.g_optimizer.variables]

    def build(self, variables) -> None:  # both are built by DCGAN.compile
        pass


class DCGAN(keras.Model):
    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int = 100,
                 d_steps: int = 1, seed: int | None = None, ema_decay: float = 0.0,
                 augment: tuple[str, ...] = (), num_classes: int | None = None, **kwargs):
        """``ema_decay`` > 0 keeps an exponential moving average of G's weights (Yazici et al.,
        2019: averaged generators give markedly better samples than the last iterate); it is
        then the generator that samples, is evaluated and is saved. ``augment``: the
        ``trainer.augment`` operations applied to every image D sees, real and fake.
        ``num_classes``: class-conditional networks (``trainer.models``); the data then holds
        (images, labels), and every fake image gets a class drawn uniformly."""
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.d_steps = d_steps
        self.augment_policy = tuple(augment)
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.ema_decay = float(ema_decay)
        self.ema_generator = None
        if self.ema_decay > 0:
            self.ema_generator = keras.models.clone_model(generator)
            self.ema_generator.set_weights(generator.get_weights())
        # Both networks arrive built; without this, fit() under a distribution would trace
        # call() on a batch of images to build the model.
        self.built = True

    def compile(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer,
                label_smoothing: float = 0.0, r1_gamma: float = 0.0, guide: keras.Model | None = None,
                class_guidance: float = 0.0, **kwargs):
        """``label_smoothing``: real images are labelled ``1 - label_smoothing`` for D (one-sided).
        ``r1_gamma`` > 0 adds the R1 penalty ``r1_gamma / 2 * E ||grad_x D(x)||^2`` over real
        images to D's loss (Mescheder et al., 2018): D is kept from growing steep around the data,
        the oscillation that plain GAN training falls into. With augmentation, x is the augmented
        image D sees. The logged ``d_loss_real``/``d_loss_fake`` do not include the penalty.
        ``class_guidance`` > 0 adds that times ``trainer.guidance.guidance_loss`` of the frozen
        ``guide``'s logits on G's images (not augmented) to G's loss; the logged ``g_loss`` does
        not include it."""
        super().compile(**kwargs)
        if class_guidance > 0 and guide is None:
            raise ValueError("class_guidance > 0 needs a guide classifier")
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.label_smoothing = float(label_smoothing)
        self.r1_gamma = float(r1_gamma)
        self.guide = guide if class_guidance > 0 else None
        self.class_guidance = float(class_guidance)
        # Built now, not lazily inside the first traced step, so a checkpoint can be restored
        # into them before fit() starts.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.optimizer = OptimizerPair(d_optimizer, g_optimizer)

    def call(self, inputs, training=False):
        return self.sampling_generator(inputs, training=training)

    @property
    def sampling_generator(self) -> keras.Model:
        """The generator to sample, evaluate and save: the averaged one when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def state_variables(self) -> list:
        """Everything a resumed run needs to continue exactly: weights, BatchNorm statistics,
        optimizer slots, loss scales and every random-number state (noise and dropout)."""
        ema = self.ema_generator.variables if self.ema_generator is not None else []
        return [*self.generator.variables, *self.discriminator.variables,
                *self.d_optimizer.variables, *self.g_optimizer.variables, self.noise_seed.state, *ema]

    # -- randomness: every draw comes from the checkpointed noise seed, so a resume stays exact

    def normal(self, n):
        """Noise for ``n`` images: ``n`` x latent_dim standard normals."""
        return replica_rows(lambda rows: keras.random.normal((rows, self.latent_dim), seed=self.noise_seed), n)

    def random_labels(self, n):
        """A class for each of ``n`` fake images, uniform over the classes; None when unconditional."""
        return self.randint((n,), 0, self.num_classes) if self.num_classes else None

    def randint(self, shape, low: int, high: int):
        """int32 in [low, high) of ``shape``, whose first dimension is this replica's batch."""
        return replica_rows(lambda rows: keras.random.randint((rows, *shape[1:]), low, high, dtype="int32",
                                                              seed=self.noise_seed), shape[0])

    def _augment(self, images):
        return augment(images, self.augment_policy, self.randint) if self.augment_policy else images

    # -- the step

    def _bce(self, target: float, logits):
        return global_share(ops.mean(ops.binary_crossentropy(ops.full_like(logits, target), logits, from_logits=True)))

    def generate(self, n) -> Fakes:
        """G's training-mode forward pass on ``n`` fresh noise vectors (and classes), with its
        backward pass kept for the generator update that follows the D update on these images."""
        labels = self.random_labels(n)

        def forward():
            return generator_forward(self.generator, self.normal(n), training=True, labels=labels), None

        images, _, pullback = value_and_vjp(forward, self.generator.trainable_variables)
        return Fakes(images, labels, pullback)

    def discriminator_step(self, real, real_labels=None, fakes: Fakes | None = None):
        """One D update on ``real`` and on ``fakes`` (by default, fakes drawn for it alone)."""
        n = ops.shape(real)[0]
        if fakes is None:
            # A training-mode forward pass of G updates its BatchNorm moving statistics; a D step
            # of its own must leave G untouched, so they are put back afterwards.
            bn_stats = list(self.generator.non_trainable_variables)
            saved = [ops.copy(v.value) for v in bn_stats]
            fake_labels = self.random_labels(n)
            fake = generator_forward(self.generator, self.normal(n), training=True, labels=fake_labels)
            for v, value in zip(bn_stats, saved):
                v.assign(value)
        else:
            fake, fake_labels = fakes.images, fakes.labels
        fake = ops.stop_gradient(fake)

        def loss():
            # Two passes, real and fake: a discriminator with BatchNormalization must not mix their
            # batch statistics, and for one without, one pass over both was no faster on
            # TensorFlow and 5% slower on JAX (docs/training.md, "Speed").
            real_logits, input_grads = self._discriminate(self._augment(real), real_labels, r1=True)
            fake_logits, _ = self._discriminate(self._augment(fake), fake_labels)
            loss_real = self._bce(1.0 - self.label_smoothing, real_logits)
            loss_fake = self._bce(0.0, fake_logits)
            total = loss_real + loss_fake
            if self.r1_gamma > 0:
                squared = ops.sum(ops.square(input_grads), axis=[1, 2, 3])
                total = total + global_share(0.5 * self.r1_gamma * ops.mean(squared))
            return self.d_optimizer.scale_loss(total), (loss_real, loss_fake, real_logits, fake_logits)

        variables = self.discriminator.trainable_variables
        _, (loss_real, loss_fake, real_logits, fake_logits), grads = value_and_grad(loss, variables)
        apply_gradients(self.d_optimizer, grads, variables)
        return loss_real, loss_fake, ops.sigmoid(real_logits), ops.sigmoid(fake_logits)

    def _discriminate(self, images, labels=None, r1: bool = False):
        """D's float32 logits (of each image as its class, for a conditional D), and with ``r1``
        (and R1 on), the gradient of each image's logit with respect to that image. Without
        BatchNormalization each logit depends on its own image only, so one gradient of their sum
        gives every image its own (with it, the sum's gradient also carries the batch-statistics
        terms). The outer gradient differentiates through it (double backprop)."""
        def discriminate(x):
            return discriminator_forward(self.discriminator, x, labels, training=True)

        if not r1 or self.r1_gamma == 0:
            return ops.cast(discriminate(images), "float32"), None

        def logit_sum(x):
            logits = ops.cast(discriminate(x), "float32")
            return ops.sum(logits), logits

        _, logits, grads = input_value_and_grad(logit_sum, images)
        return logits, ops.cast(grads, "float32")

    def generator_step(self, fakes: Fakes | int):
        """One G update through the D just updated, on ``fakes`` (given a number, that many fresh
        ones): the gradient of G's loss w.r.t. the images, pulled back through G's kept forward
        pass."""
        if not isinstance(fakes, Fakes):
            fakes = self.generate(fakes)

        def loss(fake):
            logits, _ = self._discriminate(self._augment(fake), fakes.labels)
            g_loss = self._bce(1.0, logits)  # non-saturating: maximise log D(G(z))
            total = g_loss
            if self.guide is not None:
                guide_logits = self.guide(ops.cast(fake, "float32"), training=False)
                total = total + global_share(self.class_guidance * guidance_loss(guide_logits))
            return self.g_optimizer.scale_loss(total), g_loss

        _, g_loss, image_grads = input_value_and_grad(loss, fakes.images)
        variables = self.generator.trainable_variables
        apply_gradients(self.g_optimizer, fakes.pullback(image_grads), variables)
        if self.ema_generator is not None:
            self.update_ema()
        return g_loss

    def update_ema(self):
        """ema = d * ema + (1 - d) * weights, with d warming up as min(decay, (1 + t) / (10 + t))
        over generator updates t (as tf.train.ExponentialMovingAverage's num_updates), so early
        averages are not dominated by the random initialisation. BatchNorm moving statistics are
        copied, not averaged: they are already running averages of the live generator's
        activations, as in StyleGAN's averaged generator."""
        t = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        for ema, weight in zip(self.ema_generator.weights, self.generator.weights):
            value = ops.cast(weight.value, ema.dtype)
            ema.assign(decay * ema.value + (1.0 - decay) * value if weight.trainable else value)

    def train_step(self, *args):
        """One iteration. TensorFlow calls it with the data; JAX with ``(state, data)``, where
        state holds every variable's value (``trainer/jax_step.py``)."""
        if len(args) == 2:
            from .jax_step import stateless_train_step

            return stateless_train_step(self, *args)
        return self.iteration(args[0])

    def iteration(self, data):
        """One iteration on the real images that ``data`` holds (data adapters may wrap them in a
        tuple), with their labels as its second element for a conditional model."""
        real, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.iterate(real, labels if self.num_classes else None)

    def iterate(self, real, labels=None):
        """``real`` holds ``d_steps`` batches of real images: one per discriminator update (and
        ``labels`` their classes, for a conditional model)."""
        replicas = num_replicas()
        loss_real = loss_fake = d_real = d_fake = 0.0
        label_batches = ops.split(labels, self.d_steps) if labels is not None else [None] * self.d_steps
        batches = ops.split(real, self.d_steps)
        fakes = self.generate(ops.shape(batches[-1])[0])  # the last D update's, then G's
        for i, (batch, batch_labels) in enumerate(zip(batches, label_batches)):
            last = i == self.d_steps - 1
            lr, lf, pr, pf = self.discriminator_step(batch, batch_labels, fakes if last else None)
            loss_real += lr
            loss_fake += lf
            d_real += ops.mean(pr)
            d_fake += ops.mean(pf)
        g_loss = self.generator_step(fakes)
        k = float(self.d_steps)
        # Report per-replica figures as global means (undoing global_share).
        return {
            "d_loss_real": loss_real / k * replicas,
            "d_loss_fake": loss_fake / k * replicas,
            "g_loss": g_loss * replicas,
            "d_real": d_real / k,
            "d_fake": d_fake / k,
        }
