"""The JAX engine: lax.scan, jax.jit, the generation loop as a lax.while_loop with counter-based
draws, and a stateless training step (srnn.training)."""
import inspect

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax import lax

from ..errors import SrnnError, first_line
from ..options import LEARNING_RATE
from ..precision import check_engine
from . import common
from .common import GRAD_CLIP, CarriedStates, describe_processors

NAME = "jax"


def scan(fn, elems, initializer, reverse=False):
    """tf.scan's semantics on lax.scan: fn(carry, x) -> carry, every carry stacked (in the order
    of `elems`, also when `reverse`)."""
    def step(carry, x):
        new = fn(carry, x)
        return new, new

    return lax.scan(step, initializer, elems, reverse=reverse)[1]


def tensor(x):
    """A variable's value (or any array) as an array."""
    return keras.ops.convert_to_tensor(x)


def matvec_t(a, x):
    """a^T x for a matrix a (n, m) and x (n,)."""
    return jnp.matmul(tensor(x), tensor(a))


def gather(table, indices):
    """Rows of `table`."""
    return jnp.take(tensor(table), indices, axis=0)


def cross_entropy(targets, logits):
    """Softmax cross-entropy in nats of integer `targets` under `logits` (..., q)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None].astype("int32"), axis=-1)[..., 0]


def function(fn, xla):
    """`fn` compiled with jax.jit (JAX always compiles through XLA)."""
    return jax.jit(fn)


def row_pick(x, index):
    """x[r, index[r]] for each row r of x (batch, n, ...)."""
    return x[jnp.arange(x.shape[0]), index]


def uniforms(seed, index, shape):
    """Uniform [0, 1) numbers that are a pure function of (seed, index): a frame's draws."""
    return jax.random.uniform(jax.random.fold_in(jax.random.key(seed), index), tuple(shape))


def frame_loop(body, n_frames, size, frame, states):
    """Generation's loop: `body(i, frame, states) -> (frame, states, levels, logp)` for i < n_frames
    (traced), each step's levels and log-probabilities (batch, big frame) kept in buffers of `size`
    steps (a Python int; zeros past n_frames). Returns (levels, logp) (size, batch, big frame), and
    the last frame and states."""
    levels = jnp.zeros((size, *frame.shape), jnp.int32)
    logp = jnp.zeros((size, *frame.shape), jnp.float32)

    def step(carry):
        i, frame, states, levels, logp = carry
        frame, states, out, lp = body(i, frame, states)
        return i + 1, frame, states, levels.at[i].set(out), logp.at[i].set(lp)

    carry = (jnp.int32(0), frame, states, levels, logp)
    _, frame, states, levels, logp = lax.while_loop(lambda c: c[0] < n_frames, step, carry)
    return levels, logp, frame, states


def model_function(model, fn, xla, static=()):
    """`fn`, which reads `model`'s weights, compiled with jax.jit. The weights' current values are
    passed in at each call (inside a Keras StatelessScope), so the compiled function never holds
    stale ones. `static`: the arguments (by name) that select a compilation (Python values)."""
    signature = inspect.signature(fn)
    variables = list(model.variables)

    def run(values, fixed, given):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(**dict(fixed), **given)

    jitted = jax.jit(run, static_argnums=(1,))

    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        fixed = tuple((k, bound.arguments[k]) for k in static)
        given = {k: v for k, v in bound.arguments.items() if k not in static}
        return jitted([v.value for v in variables], fixed, given)

    return call


def repeat(fn, n, x):
    """fn applied n times to x, in a loop (not unrolled)."""
    return lax.fori_loop(0, n, lambda i, x: fn(x), x)


def scalar(x):
    """A float32 scalar as the compiled steps take it."""
    return np.float32(x)


def gpus():
    return [d for d in jax.devices() if d.platform == "gpu"]


def processors():
    """What JAX computes on, for the log: its GPUs by name ('2 x NVIDIA H200'), else 'CPU'."""
    return describe_processors([d.device_kind for d in gpus()] or ["CPU"])


# ---- training steps


class Steps(CarriedStates):
    """The training and evaluation steps for one chunk, as TensorFlow's engine has them (same
    calls, same results up to rounding), written the JAX way: each step is a pure function of the
    weights, the optimizer's variables and the chunk, compiled once with jax.jit (the previous
    weights' buffers donated to the new ones), differentiated by jax.value_and_grad (through the
    cells' hand-written backward passes), clipped elementwise and applied by
    `optimizer.stateless_apply`.

    The steps keep the weights and the optimizer's variables as arrays between calls; `sync()`
    writes them into the Keras variables (the training loop calls it after each pass, before
    anything reads them: checkpoints, auditions, the test loss). Until the first step they are
    read from the variables, so a resumed run's restored weights and optimizer state are taken."""

    def __init__(self, model, learning_rate=LEARNING_RATE, clip=GRAD_CLIP, xla=None, evaluate_only=False):
        check_engine(model.precision, NAME)
        self.model, self.clip, self.loss_scale = model, clip, None
        self.optimizer = None
        if not evaluate_only:
            self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
            self.optimizer.build(model.trainable_variables)
        self._state = None  # (trainable, non-trainable, optimizer variables) as arrays, once stepping
        self._train = jax.jit(self._train_fn, donate_argnums=(0,))
        self._eval = jax.jit(self._eval_fn)

    def _read(self, copy=True):
        """The variables' values; copies for the training step, which donates its inputs' buffers
        (they must not be the variables' own)."""
        m = self.model
        opt = self.optimizer.variables if self.optimizer is not None else []
        take = jnp.copy if copy else (lambda a: a)
        return tuple([take(v.value) for v in vs] for vs in (m.trainable_variables, m.non_trainable_variables, opt))

    def _weights(self):
        """(trainable, non-trainable) as the next step would read them, for evaluation."""
        return (self._state if self._state is not None else self._read(copy=False))[:2]

    def _forward(self, trainable, non_trainable, x, states, reset, mix):
        (logits, states), non_trainable = self.model.stateless_call(trainable, non_trainable, (x, states, reset, mix))
        return logits, states, non_trainable

    def _train_fn(self, state, x, mask, reset, states, mix):
        from ..model import loss_bits  # (the model imports this engine)

        trainable, non_trainable, opt = state
        bf = self.model.cfg.big_frame

        def loss_fn(trainable):
            logits, new_states, new_non_trainable = self._forward(trainable, non_trainable, x, states, reset, mix)
            return loss_bits(logits, x[:, bf:], mask), (new_states, new_non_trainable)

        (loss, (states, non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        grads = [jnp.clip(g, -self.clip, self.clip) for g in grads]
        trainable, opt = self.optimizer.stateless_apply(opt, grads, trainable)
        return (trainable, non_trainable, opt), loss, tuple(states)

    def _eval_fn(self, trainable, non_trainable, x, mask, reset, states, mix):
        from ..model import label_bits, loss_bits

        logits, states, _ = self._forward(trainable, non_trainable, x, states, reset, mix)
        targets = x[:, self.model.cfg.big_frame:]
        per_label = (label_bits(logits, targets, mask, mix) if self.model.cfg.labels else jnp.zeros((0,)))
        return loss_bits(logits, targets, mask), tuple(states), per_label

    def train_step(self, x, mask, reset, states, mix=None):
        if self._state is None:
            self._state = self._read()
        x, mask, states, mix = self._rows(x, mask, states, mix)
        self._state, loss, states = self._train(self._state, x, mask, reset, states, mix)
        return loss, states

    def eval_step(self, x, mask, reset, states, mix=None):
        trainable, non_trainable = self._weights()
        x, mask, states, mix = self._rows(x, mask, states, mix, strict=False)
        return self._eval(trainable, non_trainable, x, mask, reset, states, mix)

    def _rows(self, x, mask, states, mix, strict=True):
        """The chunk's arrays, split by rows over the devices under keras.distribution.DataParallel
        (`data_parallel`): each device computes its rows' part of the one loss, and XLA sums the
        gradients over them, so the step is the one-device step. Rows that do not split evenly are
        an error for training (--batchsize), and for evaluation (the test split's last, smaller
        batch) stay whole: computed as on one device."""
        mix = np.zeros((len(x), 0), np.float32) if mix is None else mix
        arrays = (x, mask, tuple(states), mix)
        distribution = keras.distribution.distribution()
        if distribution is None:
            return arrays
        devices = len(distribution.device_mesh.devices.flat)
        if len(x) % devices and not strict:
            return arrays
        if len(x) % devices:
            raise SrnnError(f"--batchsize {len(x)} does not split over {devices} devices: use a multiple of {devices}")
        return jax.tree_util.tree_map(
            lambda a: jax.device_put(a, distribution.get_data_layout(a.shape).backend_layout), arrays)

    def iterations(self):
        """Optimizer steps taken (TensorBoard's step number)."""
        if self._state is None:
            return int(self.optimizer.iterations.value)
        where = next(i for i, v in enumerate(self.optimizer.variables) if v is self.optimizer.iterations)
        return int(self._here(self._state[2][where]))

    @staticmethod
    def _here(value):
        """A stepped array as this process holds it (on one machine: the array itself)."""
        return value

    def sync(self):
        """The weights and optimizer state as stepped, into the Keras variables."""
        if self._state is None:
            return
        trainable, non_trainable, opt = self._state
        m = self.model
        for v, value in zip(m.trainable_variables + m.non_trainable_variables, trainable + non_trainable):
            v.assign(value)
        if self.optimizer is not None:
            for v, value in zip(self.optimizer.variables, opt):
                v.assign(value)
        self._state = None  # read again at the next step: whatever was assigned meanwhile counts


def training_steps(cfg, opts, learning_rate, cluster=None, log=print):
    """The model and its steps for --distribute (srnn.engine.contract): `mirrored` is
    keras.distribution's DataParallel (set before the model is built), a `cluster` (srnn.cluster's,
    started by start_cluster) steps over every process's devices."""
    from ..model import SampleRNN

    if opts.distribute == "mirrored":
        log(f"mirrored: {data_parallel(opts.devices)} device(s), keras.distribution.DataParallel")
    seed(opts.seed)  # initial weights; data order is seeded per epoch
    model = SampleRNN(cfg, precision=opts.precision)
    xla = common.use_xla(cfg) if opts.xla is None else opts.xla
    steps = (Steps if cluster is None else ClusterSteps)(model, learning_rate=learning_rate, xla=xla)
    if cluster is not None:
        devices = len(steps.by_rows.mesh.devices.flat)
        log(f"multiworker: {cluster.count} processes, {devices} device(s) in all, "
            f"{opts.batchsize // devices} sequence(s) each; coordinator {cluster.coordinator}")
    return model, steps, xla


# ---- several processes: --distribute multiworker (srnn.cluster)


def start_cluster(cluster, timeout):
    """JAX's distributed runtime for `cluster`, whose processes have met (srnn.cluster.meet); on
    CPU its collectives over gloo. Before any other JAX work. Returns (devices in all, here)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        # (the processes leave together: at exit the others wait for process 0's test loss, which
        # may take long, so their wait at JAX's shutdown barrier is not the default 5 minutes.
        # The coordinator listens where the meeting did, on the interface the address names: JAX's
        # default is every interface, [::])
        jax.distributed.initialize(coordinator_address=cluster.coordinator, num_processes=cluster.count,
                                   process_id=cluster.index, initialization_timeout=max(int(timeout), 1),
                                   shutdown_timeout_seconds=SHUTDOWN_WAIT, coordinator_bind_address=cluster.coordinator)
    except (RuntimeError, ValueError) as e:
        raise SrnnError(f"JAX's distributed runtime did not start at {cluster.coordinator} ({first_line(e)}): "
                        f"start every process afresh") from None
    from ..quiet import stderr_to_file

    with stderr_to_file((1, 2)):  # gloo says on stdout that it has connected, at each group's first collective:
        agree(True)  # the processes' group
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devices = jax.devices()  # and every device's, as the training steps sum over them
        rows = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
        ones = np.ones((len(jax.local_devices()),), np.float32)
        jax.jit(jnp.sum)(jax.make_array_from_process_local_data(rows, ones, (len(devices),))).block_until_ready()
    return len(jax.devices()), len(jax.local_devices())


SHUTDOWN_WAIT = 7 * 24 * 3600  # seconds


def agree(flag):
    """Process 0's `flag` on every process (a decision that must not differ: stopping)."""
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(bool(flag))))


class ClusterSteps(Steps):
    """Steps over every device of every process: each process feeds its own rows of the global
    batch and carries their states, the weights and Adam's variables are replicated on every
    device, and XLA sums the gradient over all of them before the clip: the one-device step. The
    Keras variables hold this process's copy (`sync`), so checkpoints, auditions and the test loss
    are computed as on one machine."""

    together = True  # each step takes every process's stop request (stopping) and gives their max

    def evaluator(self):
        """One process's evaluation steps (process 0's test loss, computed alone)."""
        return Steps(self.model, xla=False, evaluate_only=True)

    def agree(self, flag):
        return agree(flag)

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.array(jax.devices()), ("batch",))
        self.by_rows = NamedSharding(mesh, PartitionSpec("batch"))
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.processes, self.index = jax.process_count(), jax.process_index()
        # each step also takes every process's stop request and gives their max (see stop_after)
        self.stopping, self._asked = False, 0
        self._train = jax.jit(lambda state, *args, flags: (*self._train_fn(state, *args), jnp.max(flags)),
                              donate_argnums=(0,))
        self._eval = jax.jit(lambda *args, flags: (*self._eval_fn(*args), jnp.max(flags)))

    def train_step(self, x, mask, reset, states, mix=None):
        if self._state is None:
            self._state = self._read()
        x, mask, states, mix = self._rows(x, mask, states, mix)
        self._state, loss, states, self._asked = self._train(self._state, x, mask, reset, states, mix,
                                                             flags=self._flags())
        return loss, states

    def eval_step(self, x, mask, reset, states, mix=None):
        trainable, non_trainable = self._weights()
        x, mask, states, mix = self._rows(x, mask, states, mix)
        loss, states, per_label, self._asked = self._eval(trainable, non_trainable, x, mask, reset, states, mix,
                                                          flags=self._flags())
        return loss, states, per_label

    def _flags(self):
        return self._global(np.full((len(jax.local_devices()),), int(self.stopping), np.int32))

    def stop_after(self):
        """Whether any process asked to stop before the last step: all of them stop after it."""
        return bool(int(self._asked))

    def _read(self, copy=True):
        """The variables' values, replicated on every device of the cluster (each process gives its
        own copy, the same everywhere); new arrays, so the training step may donate them."""
        def replicate(value):
            value = np.asarray(value)
            return jax.make_array_from_callback(value.shape, self.replicated, lambda index: value[index])

        return tuple([replicate(v) for v in vs] for vs in super()._read(copy=False))

    def _global(self, local):
        """This process's rows -> the global batch's array, split by rows over all devices."""
        if isinstance(local, jax.Array) and not local.is_fully_addressable:
            return local  # already global: states carried from the previous step
        local = np.asarray(local)
        shape = (len(local) * self.processes,) + local.shape[1:]
        return jax.make_array_from_process_local_data(self.by_rows, local, shape)

    def _rows(self, x, mask, states, mix, strict=True):
        mix = np.zeros((len(x), 0), np.float32) if mix is None else mix
        return self._global(x), self._global(mask), tuple(self._global(s) for s in states), self._global(mix)

    @staticmethod
    def _here(value):
        return np.asarray(value.addressable_data(0))  # replicated: every device holds the whole value

    def sync(self):
        """This process's copy of the replicated weights and optimizer state, into the variables."""
        if self._state is not None:
            self._state = tuple([self._here(v) for v in vs] for vs in self._state)
        super().sync()

    def states_to_numpy(self, states):
        return None  # the other processes' rows are not here: a cluster's checkpoint carries no states

    def states_from_numpy(self, arrays):
        """A checkpoint's states (the whole batch's rows, from a run on any number of processes):
        this process's rows of them."""
        rows = len(arrays[0]) // self.processes
        return tuple(self._global(np.asarray(a)[self.index * rows:(self.index + 1) * rows]) for a in arrays)


def data_parallel(devices=None):
    """`--distribute mirrored` on JAX: keras.distribution.DataParallel over `devices` (names like
    GPU:0; default every local device), set before the model is built so that its weights and the
    optimizer's are replicated on each. Returns the number of devices."""
    local = keras.distribution.list_devices()
    chosen = local
    if devices:
        chosen = []
        for d in devices:
            name = d.lower().lstrip("/").replace("device:", "")
            if name not in local:
                raise SrnnError(f"--devices: no device {d} on this machine (it has {', '.join(local)})")
            chosen.append(name)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
    return len(chosen)


def seed(value):
    """Seed Python's, NumPy's and Keras' generators (a model's initial weights). Keras seeds
    TensorFlow too where it is installed, importing it: quietly, as srnn does everywhere."""
    from ..quiet import stderr_to_file

    with stderr_to_file():
        keras.utils.set_random_seed(value)
