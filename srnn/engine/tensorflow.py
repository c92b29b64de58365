"""The TensorFlow engine: tf.scan, tf.function (with XLA where it pays), the generation loop as a
tf.while_loop with stateless draws, and the training steps (srnn.training) with GradientTape and
tf.distribute."""
import numpy as np

from ..errors import SrnnError
from ..options import LEARNING_RATE
from ..precision import check_distribute
from ..quiet import import_tensorflow
from . import common
from .common import GRAD_CLIP, CarriedStates, describe_processors

tf = import_tensorflow()
import keras  # noqa: E402  (after TensorFlow is initialised quietly)

NAME = "tensorflow"


def scan(fn, elems, initializer, reverse=False):
    """tf.scan: fn(carry, x) -> carry, every carry stacked (in the order of `elems`)."""
    return tf.scan(fn, elems, initializer=initializer, reverse=reverse)


def tensor(x):
    """A variable's value (or any array) as a tensor (what tf.custom_gradient takes)."""
    return tf.convert_to_tensor(x)


def matvec_t(a, x):
    """a^T x for a matrix a (n, m) and x (n,)."""
    return tf.linalg.matvec(a, x, transpose_a=True)


def gather(table, indices):
    """Rows of `table`."""
    return tf.gather(table, indices)


def cross_entropy(targets, logits):
    """Softmax cross-entropy in nats of integer `targets` under `logits` (..., q)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)


def function(fn, xla):
    """`fn` compiled: a tf.function, through XLA when `xla`. Without AutoGraph: srnn's traced code
    has no Python control flow on tensors (the same code runs under jax.jit, which has none) and
    writes its loops as tf.while_loop and tf.scan, so AutoGraph's rewriting of every function it
    calls (their source parsed and transformed at each trace) only cost time: most of the trace of
    the generation loop, seconds before the first sound."""
    return tf.function(fn, jit_compile=xla, autograph=False)


def row_pick(x, index):
    """x[r, index[r]] for each row r of x (batch, n, ...)."""
    return tf.gather(x, index, batch_dims=1)


def uniforms(seed, index, shape):
    """Uniform [0, 1) numbers that are a pure function of (seed, index): a frame's draws."""
    return tf.random.stateless_uniform(list(shape), seed=tf.stack([seed, index]))


def frame_loop(body, n_frames, size, frame, states):
    """Generation's loop: `body(i, frame, states) -> (frame, states, levels, logp)` for i < n_frames
    (a tensor), each step's levels and log-probabilities (batch, big frame) kept in buffers of
    `size` steps (zeros past n_frames). Returns (levels, logp) (size, batch, big frame), and the
    last frame and states."""
    def step(i, frame, states, levels_ta, logp_ta):
        frame, states, levels, logp = body(i, frame, states)
        return i + 1, frame, states, levels_ta.write(i, levels), logp_ta.write(i, logp)

    shape = frame.shape  # (batch, big frame): the unwritten rows past n_frames need it
    loop_vars = (tf.constant(0), frame, states, tf.TensorArray(tf.int32, size=size, element_shape=shape),
                 tf.TensorArray(tf.float32, size=size, element_shape=shape))
    _, frame, states, levels_ta, logp_ta = tf.while_loop(lambda i, *_: i < n_frames, step, loop_vars)
    return levels_ta.stack(), logp_ta.stack(), frame, states


def model_function(model, fn, xla, static=()):
    """`fn`, which reads `model`'s weights, compiled (a tf.function reads the variables as they
    are at each call). `static`: the arguments that select a trace (Python values)."""
    return function(fn, xla)


def repeat(fn, n, x):
    """fn applied n times to x, in a loop (not unrolled)."""
    return tf.while_loop(lambda i, x: i < n, lambda i, x: (i + 1, fn(x)), (tf.constant(0), x))[1]


def scalar(x):
    """A float32 scalar as the compiled steps take it."""
    return tf.constant(x, tf.float32)


def gpus():
    return tf.config.list_physical_devices("GPU")


def processors():
    """What TensorFlow computes on, for the log: its GPUs by name ('2 x NVIDIA H200'), else 'CPU'."""
    return describe_processors([tf.config.experimental.get_device_details(g).get("device_name", "GPU")
                                for g in gpus()] or ["CPU"])


# ---- training steps


def clip_gradients(grads, clip=GRAD_CLIP):
    return [tf.clip_by_value(g, -clip, clip) for g in grads]


class LossScale:
    """Dynamic loss scaling, for float16 training (srnn.precision): the loss is multiplied by
    `scale` before the gradient, so that small gradients do not underflow float16, and the
    gradients divided by it after. A step whose gradients are not finite is skipped and halves
    the scale; every `growth` finite steps double it (Keras' LossScaleOptimizer's scheme, here so
    that the gradients are clipped after unscaling, as in float32)."""

    def __init__(self, initial=2.0 ** 15, growth=2000):
        self.scale = tf.Variable(initial, trainable=False, dtype=tf.float32, name="loss_scale")
        self.good = tf.Variable(0, trainable=False, dtype=tf.int64, name="finite_steps")
        self.growth = growth

    def step(self, grads, apply):
        """Unscale `grads`; if they are all finite, `apply(unscaled)`, else skip the step."""
        grads = [g / self.scale for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])

        def good():
            apply(grads)
            grow = self.good + 1 >= self.growth
            self.scale.assign(tf.where(grow, self.scale * 2.0, self.scale))
            self.good.assign(tf.where(grow, tf.constant(0, tf.int64), self.good + 1))
            return tf.constant(True)

        def bad():
            self.scale.assign(tf.maximum(self.scale / 2.0, 1.0))
            self.good.assign(0)
            return tf.constant(False)

        return tf.cond(finite, good, bad)

    def state(self):
        """For the checkpoint: an exact resume goes on with the same scale."""
        return {"loss_scale": float(self.scale.numpy()), "loss_scale_good": int(self.good.numpy())}

    def restore(self, train):
        if "loss_scale" in train:  # absent when the file was trained in another precision
            self.scale.assign(float(train["loss_scale"]))
            self.good.assign(int(train["loss_scale_good"]))


class Steps(CarriedStates):
    """The compiled training and evaluation steps for one chunk.

    Each takes (x, mask, reset, states, mix) and returns (loss_bits, states), `states` a tuple with
    one tensor per RNN layer (SampleRNN.state_sizes), `mix` the rows' label weights (batch,
    n_labels), n_labels 0 for an unconditional model; the states are returned as values, never
    differentiated through across chunks (truncated BPTT). The evaluation step also returns the
    per-label sums of srnn.model.label_bits (empty for an unconditional model)."""

    def __init__(self, model, learning_rate=LEARNING_RATE, clip=GRAD_CLIP, xla=None, evaluate_only=False):
        self.model, self.clip = model, clip
        self.optimizer = None
        # float16 gradients underflow without it; float32 and bfloat16 have the range
        self.loss_scale = LossScale() if model.precision == "mixed_float16" else None
        if not evaluate_only:
            self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
            self.optimizer.build(model.trainable_variables)
        xla = common.use_xla(model.cfg) if xla is None else xla
        self._train_compiled = function(self._train, xla)
        self._eval_compiled = function(self._eval, xla)

    def train_step(self, x, mask, reset, states, mix=None):
        """One optimizer step on a chunk: (loss_bits, states)."""
        return self._train_compiled(x, mask, reset, states, mix)

    def eval_step(self, x, mask, reset, states, mix=None):
        """The loss on a chunk: (loss_bits, states, per-label sums)."""
        return self._eval_compiled(x, mask, reset, states, mix)

    def gradients(self, x, mask, reset, states, mix=None, scale=None):
        """Loss, clipped gradients and new states (not compiled; used by tests and _train). With a
        loss `scale` (float16): the gradients of loss * scale, unclipped (LossScale unscales them,
        and they are clipped after)."""
        from ..model import loss_bits  # (the model imports this engine)

        bf = self.model.cfg.big_frame
        with tf.GradientTape() as tape:
            logits, states = self.model.forward(x, states, reset, mix)
            loss = loss_bits(logits, x[:, bf:], mask)
            target = loss if scale is None else loss * scale
        grads = tape.gradient(target, self.model.trainable_variables)
        return loss, clip_gradients(grads, self.clip) if scale is None else grads, states

    def _train(self, x, mask, reset, states, mix=None):
        variables = self.model.trainable_variables
        if self.loss_scale is None:
            loss, grads, states = self.gradients(x, mask, reset, states, mix)
            self.optimizer.apply(grads, variables)
        else:
            loss, grads, states = self.gradients(x, mask, reset, states, mix, scale=self.loss_scale.scale)
            self.loss_scale.step(grads, lambda g: self.optimizer.apply(clip_gradients(g, self.clip), variables))
        return loss, states

    def _eval(self, x, mask, reset, states, mix=None):
        from ..model import loss_bits

        logits, states = self.model.forward(x, states, reset, mix)
        targets = x[:, self.model.cfg.big_frame:]
        return loss_bits(logits, targets, mask), states, self._label_bits(logits, targets, mask, mix)

    def _label_bits(self, logits, targets, mask, mix):
        if not self.model.cfg.labels:  # nothing computed: the unconditional graph stays as it was
            return tf.zeros((0,))
        from ..model import label_bits

        return label_bits(logits, targets, mask, mix)

    def iterations(self):
        """Optimizer steps taken (TensorBoard's step number)."""
        return int(self.optimizer.iterations.numpy())

    def sync(self):
        """Nothing to do: the variables are updated in place by each step."""


def training_steps(cfg, opts, learning_rate, cluster=None, log=print):
    """The model and its steps for --distribute (srnn.engine.contract): tf.distribute's strategy
    first (a multi-worker one sets up the runtime itself, before any other TensorFlow work), then
    the seed, the model and its steps, under the strategy's scope. TensorFlow's clusters meet by
    TF_CONFIG: `cluster` is always None here."""
    from ..distribute import make_strategy
    from ..model import SampleRNN

    strategy = make_strategy(opts.distribute, opts.devices)
    seed(opts.seed)  # initial weights; data order is seeded per epoch
    if strategy is None:
        model = SampleRNN(cfg, precision=opts.precision)
        xla = common.use_xla(cfg) if opts.xla is None else opts.xla
        return model, Steps(model, learning_rate=learning_rate, xla=xla), xla
    with strategy.scope():
        model = SampleRNN(cfg, precision=opts.precision)
        steps = DistributedSteps(model, strategy, learning_rate=learning_rate)
    log(f"{opts.distribute}: {steps.replicas} replica(s), {opts.batchsize // steps.replicas} sequence(s) each")
    return model, steps, False


def start_cluster(cluster, timeout):
    """TensorFlow's processes meet through TF_CONFIG (srnn.distribute), not srnn.cluster."""
    raise SrnnError("--distribute multiworker on TensorFlow reads TF_CONFIG: its processes do not meet through "
                    "KERAS_DISTRIBUTION_* (that is the JAX engine's)")


class DistributedSteps(Steps):
    """The same steps over the replicas of a tf.distribute strategy (build it, and the model,
    under `strategy.scope()`).

    Each replica gets its slice of the batch's rows and keeps its own carried states. The loss of
    each replica is its masked sum over the whole batch's count of real samples, so the replicas'
    losses and gradients add up to the one-device ones; the gradient is summed over the replicas
    before the elementwise clip (clipping each replica's part would be another algorithm), and
    the optimizer, which sums what the replicas give it, gets 1/replicas of the clipped sum.
    XLA is not used here: it cannot compile the cross-replica sum on every platform."""

    def evaluator(self):
        """One device's evaluation steps: the test split may end in a smaller batch, and a
        cluster's workers need not agree on anything for it."""
        return Steps(self.model, xla=False, evaluate_only=True)

    def __init__(self, model, strategy, learning_rate=LEARNING_RATE, clip=GRAD_CLIP):
        check_distribute(model.precision, "mirrored")
        super().__init__(model, learning_rate, clip, xla=False)
        self.strategy, self.replicas = strategy, strategy.num_replicas_in_sync
        self._train_all = function(self._distributed(train=True), False)
        self._eval_all = function(self._distributed(train=False), False)

    def train_step(self, x, mask, reset, states, mix=None):
        return self._call(self._train_all, x, mask, reset, states, mix)

    def eval_step(self, x, mask, reset, states, mix=None):
        return self._call(self._eval_all, x, mask, reset, states, mix)

    def _split(self, array):
        """Per-replica row slices of a NumPy array (batch first); every worker of a cluster holds
        the whole batch and keeps its own replicas' rows."""
        array = np.asarray(array)
        if array.shape[0] % self.replicas:
            raise SrnnError(f"--batchsize {array.shape[0]} does not split over {self.replicas} replicas: "
                            f"use a multiple of {self.replicas}")
        rows = array.shape[0] // self.replicas

        def replica_rows(ctx):
            first = ctx.replica_id_in_sync_group * rows
            return tf.constant(array[first:first + rows])

        return self.strategy.experimental_distribute_values_from_function(replica_rows)

    def zero_states(self, batch):
        return tuple(self._split(np.zeros((batch, n), np.float32)) for n in self.model.state_sizes())

    def states_to_numpy(self, states):
        """All replicas' states as arrays; None in a cluster, where this process holds only its
        own replicas' rows."""
        arrays = []
        for h in states:
            local = self.strategy.experimental_local_results(h)
            if len(local) != self.replicas:
                return None
            arrays.append(np.concatenate([np.asarray(t) for t in local]))
        return arrays

    def states_from_numpy(self, arrays):
        return tuple(self._split(a) for a in arrays)

    def _call(self, fn, x, mask, reset, states, mix=None):
        count = tf.constant(max(float(np.sum(mask)), 1.0))
        mix = np.zeros((len(x), 0), np.float32) if mix is None else mix
        return fn(self._split(x), self._split(mask), reset, tuple(states), self._split(mix), count)

    def _distributed(self, train):
        from ..model import loss_bits

        model, opt, bf = self.model, self.optimizer, self.model.cfg.big_frame

        def replica(x, mask, reset, states, mix, count):
            with tf.GradientTape() as tape:
                logits, states = model.forward(x, states, reset, mix)
                loss = loss_bits(logits, x[:, bf:], mask, count)
            if train:
                grads = tape.gradient(loss, model.trainable_variables)
                grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
                opt.apply([g / self.replicas for g in clip_gradients(grads, self.clip)], model.trainable_variables)
                return loss, states
            return loss, states, self._label_bits(logits, x[:, bf:], mask, mix)

        def step(x, mask, reset, states, mix, count):
            out = self.strategy.run(replica, args=(x, mask, reset, states, mix, count))
            summed = [self.strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None)
                      for t in out[:1] + out[2:]]
            return (summed[0], out[1], *summed[1:])

        return step


def seed(value):
    """Seed Python's, NumPy's and Keras' generators (a model's initial weights)."""
    keras.utils.set_random_seed(value)
