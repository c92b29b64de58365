"""What every engine's training step shares, backend-free."""
import collections

import numpy as np

GRAD_CLIP = 1.0  # elementwise, as the reference


def use_xla(cfg):
    """XLA fuses the many small per-timestep ops of a small model into one program (several
    times faster); for large models the big matmuls dominate and XLA gains nothing on TensorFlow,
    so plain TensorFlow graphs are used there (JAX always compiles through XLA)."""
    return max(cfg.dim, cfg.slowdim) <= 512


def generate_with_xla(cfg):
    """The generation loop is compiled by XLA at every size: it fuses the ~100 small ops of a big
    frame into one program, which measured on 2 cores wins from dim 32 (5x) to dim 1024 (1.1-1.2x,
    1 and 16 streams). (JAX compiles it in any case.)"""
    return True


class CarriedStates:
    """What every engine's training steps share: the carried TBPTT states as plain arrays, one per
    RNN layer (tf.distribute's steps keep one slice per replica instead), for the steps' `model`;
    and the answers of steps on one device to what steps over many devices or processes do their own
    way (a subclass overrides them)."""

    together = False  # the processes of a cluster stop after the same step (then: stopping, stop_after)

    def evaluator(self):
        """Steps for a pass that runs on this process alone (the test loss): these."""
        return self

    def agree(self, flag):
        """A decision every process must share (stopping after an epoch): here, this one's."""
        return flag

    def zero_states(self, batch):
        return self.model.zero_states(batch)

    def states_to_numpy(self, states):
        return [np.asarray(s) for s in states]

    def states_from_numpy(self, arrays):
        from keras import ops  # (Keras loads after the engine's framework)

        return tuple(ops.convert_to_tensor(a) for a in arrays)


def describe_processors(kinds):
    """'CPU', 'NVIDIA H200' or '8 x NVIDIA H200, NVIDIA H100': a list of processor kinds, counted."""
    return ", ".join(kind if n == 1 else f"{n} x {kind}" for kind, n in collections.Counter(kinds).items())
