"""What an engine provides: the contract every srnn.engine.<backend> module fulfils, written as a
typing.Protocol (tests/test_engines.py checks both engines against it), and what each engine can do,
declared without loading its framework (the command line refuses a flag an engine cannot serve
before anything loads).

A third engine (PyTorch, say) is a module `srnn/engine/torch.py` with every name below, an entry
in FEATURES, and its name in srnn.engine.ENGINES.
"""
import dataclasses
import typing


class Engine(typing.Protocol):
    """One backend's module (srnn.engine.tensorflow, srnn.engine.jax)."""

    NAME: str  # Keras' name of the backend

    # ---- maths the model and the sampler need beyond keras.ops
    def scan(self, fn, elems, initializer, reverse=False):
        """tf.scan's semantics: fn(carry, x) -> carry, every carry stacked in the order of `elems`."""

    def tensor(self, x):
        """A variable's value (or any array) as this backend's tensor."""

    def matvec_t(self, a, x):
        """a^T x for a matrix a (n, m) and x (n,)."""

    def gather(self, table, indices):
        """Rows of `table`."""

    def cross_entropy(self, targets, logits):
        """Softmax cross-entropy in nats of integer `targets` under `logits` (..., q)."""

    def row_pick(self, x, index):
        """x[r, index[r]] for each row r of x (batch, n, ...)."""

    def uniforms(self, seed, index, shape):
        """Uniform [0, 1) numbers, a pure function of (seed, index): a big frame's draws."""

    def frame_loop(self, body, n_frames, size, frame, states):
        """Generation's loop over big frames (see srnn.sampler): (levels, logp, frame, states)."""

    def function(self, fn, xla):
        """`fn` compiled (through XLA when `xla`)."""

    def model_function(self, model, fn, xla, static=()):
        """`fn`, which reads `model`'s weights, compiled; it reads their current values at each call."""

    def repeat(self, fn, n, x):
        """fn applied n times to x, in a loop (not unrolled)."""

    def scalar(self, x):
        """A float32 scalar as the compiled steps take it."""

    # ---- devices
    def gpus(self):
        """This backend's GPUs (a list; empty on a CPU)."""

    def processors(self):
        """What it computes on, for the log: '2 x NVIDIA H200' or 'CPU'."""

    # ---- training
    Steps: type  # one device's compiled training and evaluation steps (see srnn.engine.common.CarriedStates)

    def seed(self, value):
        """Seed Python's, NumPy's and Keras' generators (a model's initial weights)."""

    def training_steps(self, cfg, opts, learning_rate, cluster=None, log=print):
        """The model of `cfg` and its training steps for the run's --distribute (one device, the local
        devices, or a cluster's processes: `cluster`, srnn.cluster's, met already): (model, steps,
        xla). Seeds first (opts.seed), after whatever runtime --distribute must set up first."""

    def start_cluster(self, cluster, timeout):
        """The backend's runtime for the processes of `cluster` (srnn.cluster), met already:
        (devices in all, devices here); an engine whose clusters meet otherwise refuses in one line."""


@dataclasses.dataclass(frozen=True)
class Features:
    """What an engine can do, known before its framework loads."""
    savedmodel: bool  # --export writes a TensorFlow SavedModel
    float16_loss_scale: bool  # --precision mixed_float16 (a dynamic loss scale)
    cluster_from: str  # --distribute multiworker: where the processes come from (its variables)
    uses_srnn_cluster: bool  # its processes meet through srnn.cluster (else the framework's own runtime)
    owns_tensorflow: bool  # TensorFlow is the engine's own framework (--tensorboard writes with it either way)


FEATURES = {
    "tensorflow": Features(savedmodel=True, float16_loss_scale=True, cluster_from="TF_CONFIG",
                           uses_srnn_cluster=False, owns_tensorflow=True),
    "jax": Features(savedmodel=False, float16_loss_scale=False, cluster_from="KERAS_DISTRIBUTION_*",
                    uses_srnn_cluster=True, owns_tensorflow=False),
}
