"""The layers a SampleRNN is made of (srnn.tiers puts them together): the weight-normalised Dense
and RNN layers, their masks for pruning, and a conditioned model's label table; and the matrix
product and input scaling every tier shares. Every kernel is weight-normalised, w = g * v / ||v||,
g starting at the initial column norms, so a layer starts as its plain counterpart."""
from . import engine
from .cells import CELLS
from .packed import matmul as matmul_2d

E = engine.module()
import keras  # noqa: E402  (after the engine has loaded its framework quietly)
from keras import ops  # noqa: E402


def scale_levels(levels, q_levels):
    """Integer levels -> floats in [-2, 2), the reference's input scaling."""
    return (ops.cast(levels, "float32") / (q_levels / 2.0) - 1.0) * 2.0


def matmul(x, w):
    """(..., n) @ (n, m) -> (..., m) as one 2-D GEMM (faster than a batched matmul). In the step
    forms x is 2-D and w may be a sampler's packed step weight (srnn.packed)."""
    if len(x.shape) == 2:
        return matmul_2d(x, w)
    shape = ops.shape(x)
    y = ops.matmul(ops.reshape(x, (-1, x.shape[-1])), w)
    return ops.reshape(y, (*shape[:-1], w.shape[-1]))


def weight_norm(v, g):
    """w = g * v / ||v||, the norm taken over the input axis (one per output unit). Computed in
    float32 and given in v's dtype: under a mixed policy v is read as bfloat16/float16, whose sums
    of squares would be too coarse (in float32 both casts do nothing)."""
    v = E.tensor(v)  # a variable read under a mixed policy comes out in the compute dtype
    v32, g32 = ops.cast(v, "float32"), ops.cast(g, "float32")
    return ops.cast(v32 * (g32 / ops.sqrt(ops.sum(ops.square(v32), axis=0))), v.dtype)


def add_weight_norm(layer, suffix, shape, initializer):
    """A weight-normalised kernel's weights `v{suffix}` and `g{suffix}`, g starting at the column
    norms of the initial v so that the layer starts as its plain counterpart (w == v)."""
    v = layer.add_weight(name=f"v{suffix}", shape=shape, initializer=initializer)
    g = layer.add_weight(name=f"g{suffix}", shape=(shape[-1],), initializer="ones")
    g.assign(ops.norm(v, axis=0))
    return v, g


def add_mask(layer, suffix, shape):
    """A pruned kernel's mask `mask{suffix}` (srnn.sparse): ones (dense) until the pruning sets it.
    Not trained; it multiplies v inside every kernel, so a pruned weight is zero in every forward
    pass and gets a zero gradient (srnn.prune zeroes v and its Adam moments when it prunes, after
    which the optimizer leaves them at zero)."""
    return layer.add_weight(name=f"mask{suffix}", shape=shape, initializer="ones", trainable=False)


def masked(v, mask):
    """v, with its pruned weights zeroed (a sparse model's kernels)."""
    if mask is None:
        return v
    v = E.tensor(v)  # a variable read under a mixed policy comes out in the compute dtype
    return v * ops.cast(mask, v.dtype)


def _blocks(w, n):
    """The n equal column blocks of w (..., n*m)."""
    return ops.split(w, n, axis=-1)


# ---- the two weight layers everything is made of

class WNDense(keras.layers.Layer):
    """A weight-normalised Dense layer; `kernel()` gives the effective matrix."""

    def __init__(self, units, use_bias=True, kernel_initializer="he_uniform", pruned=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.use_bias, self.pruned = units, use_bias, pruned
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.v, self.g = add_weight_norm(self, "", (input_shape[-1], self.units), self.kernel_initializer)
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros") if self.use_bias else None
        self.mask = add_mask(self, "", (input_shape[-1], self.units)) if self.pruned else None

    def kernel(self):
        return weight_norm(masked(self.v, self.mask), self.g)

    def pruned_kernels(self):
        """[(v, g, mask)] of this layer's pruned kernels (srnn.prune)."""
        return [(self.v, self.g, self.mask)] if self.pruned else []

    def call(self, x):
        y = matmul(x, self.kernel())
        return y + self.b if self.use_bias else y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias, "pruned": self.pruned,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


class WNRNN(keras.layers.Layer):
    """One recurrent layer (GRU or LSTM, see srnn.cells) with weight-normalised input and
    recurrent kernels and a learned, zero-initialised initial state `h0` (for the LSTM, h and c)."""

    def __init__(self, units, cell="gru", pruned=(False, False), **kwargs):
        super().__init__(**kwargs)
        self.units, self.cell_name, self.cell = units, cell, CELLS[cell]
        self.pruned = tuple(pruned)  # (input kernel, recurrent kernel) pruned (srnn.sparse)

    @property
    def state_size(self):
        return self.cell.states * self.units

    def build(self, input_shape):
        width = self.cell.gates * self.units
        self.vx, self.gx = add_weight_norm(self, "x", (input_shape[-1], width), "glorot_uniform")
        self.vh, self.gh = add_weight_norm(self, "h", (self.units, width), "orthogonal")
        # the LSTM's forget gate starts open (bias 1), as Keras' unit_forget_bias does
        bias = "zeros" if self.cell_name == "gru" else keras.initializers.Constant(
            [0.0] * self.units + [1.0] * self.units + [0.0] * (2 * self.units))
        self.bx = self.add_weight(name="bx", shape=(width,), initializer=bias)
        self.bh = self.add_weight(name="bh", shape=(width,), initializer="zeros")
        self.h0 = self.add_weight(name="h0", shape=(self.state_size,), initializer="zeros")
        self.maskx = add_mask(self, "x", (input_shape[-1], width)) if self.pruned[0] else None
        self.maskh = add_mask(self, "h", (self.units, width)) if self.pruned[1] else None

    def input_kernel(self):
        return weight_norm(masked(self.vx, self.maskx), self.gx)

    def kernels(self):
        """(wx, bx, wh, bh) effective weights."""
        return self.input_kernel(), self.bx, weight_norm(masked(self.vh, self.maskh), self.gh), self.bh

    def pruned_kernels(self):
        """[(v, g, mask)] of this layer's pruned kernels (srnn.prune)."""
        return [k for k, on in zip(((self.vx, self.gx, self.maskx), (self.vh, self.gh, self.maskh)), self.pruned) if on]

    def start_state(self, state, reset):
        """The learned h0 (tiled over the batch) where `reset` is 1, the carried state otherwise.
        A blend rather than a select so h0 gets its gradient only from chunks that use it."""
        reset = ops.cast(reset, self.compute_dtype)
        return reset * ops.broadcast_to(self.h0, ops.shape(state)) + (1.0 - reset) * state

    def hidden(self, state):
        """The part of the state the next layer reads: h."""
        return state if self.cell.states == 1 else state[..., :self.units]

    def call(self, x, state, extra=None):
        """Sequence form: x (batch, time, in) -> (outputs (batch, time, units), last state).
        `extra` (batch, gates*units) is added to every step's projected input (a label's vector)."""
        wx, bx, wh, bh = self.kernels()
        xp = matmul(x, wx) + bx
        if extra is not None:
            xp = xp + extra[:, None, :]
        return self.cell.sequence(xp, state, wh, bh)

    def step(self, xp, state, wh, bh):
        """Step form: xp = x @ wx + bx (batch, gates*units) -> the new state."""
        return self.cell.step(xp, state, wh, bh)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "cell": self.cell_name, "pruned": self.pruned}


class LabelTable(keras.layers.Layer):
    """One learned vector per label, zero at the start (a conditioned model starts as its
    unconditional twin, and the tables draw no random numbers: the other weights of a seed are
    the same with or without labels). `mix` (batch, n_labels) -> mix @ table (batch, width)."""

    def __init__(self, n_labels, width, **kwargs):
        super().__init__(**kwargs)
        self.n_labels, self.width = n_labels, width

    def build(self, input_shape=None):
        self.table = self.add_weight(name="table", shape=(self.n_labels, self.width), initializer="zeros")

    def call(self, mix):
        return ops.matmul(ops.cast(mix, self.compute_dtype), self.table)

    def get_config(self):
        return {**super().get_config(), "n_labels": self.n_labels, "width": self.width}


def _label_table(n_labels, width, dtype):
    if not n_labels:
        return None
    table = LabelTable(n_labels, width, name="label", dtype=dtype)
    table.build()
    return table
