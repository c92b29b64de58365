"""SampleRNN (Mehri et al., ICLR 2017) as Keras 3 layers: frame tiers over a sample-level MLP.

    x (levels) ──scale──┬──────────────────────────────┬────────────────┬──────────────┐
                        │ frames of F1 = big frame     │ frames of F2   │  frames of FK│  last FK samples
                        ▼                              ▼                ▼              ▼  (embedded)
                 ┌─────────────┐  F1/F2 vectors  ┌─────────────┐      ┌─────────────┐  FK vectors ┌──────────┐
                 │ frame tier 1│ ──────────────▶ │ frame tier 2│ ···▶ │ frame tier K│ ──────────▶ │sample MLP│─▶ logits
                 │ RNN×N (top) │   per step      │ in + RNN×N  │      │ in + RNN×N  │  per step   └──────────┘
                 └─────────────┘                 └─────────────┘      └─────────────┘

Each frame tier k runs its RNN (GRU or LSTM, N layers) once per frame of F_k samples; its input is
the scaled frame (the top tier) or a linear projection of it plus the vector the tier above emitted
for this step; its output layer emits F_k / F_(k+1) vectors, one per step of the tier below (F_(K+1)
= 1: one per sample). The sample MLP embeds the previous F_K samples, adds the bottom tier's
vector and gives q_levels logits. `--frames 8,2` with one GRU layer is the original's three-tier
model: for a chunk x of shape (batch, cutlen + 8)

    slow tier   x[:, :-8] in frames of 8 -> GRU(slowdim) -> Dense(4*dim): one vector per mid frame
    mid tier    x[:, 6:-2] in frames of 2 -> Dense(dim) + slow vector -> GRU(dim) -> Dense(2*dim)
    sample tier x[t-2], x[t-1] -> Embedding(256) each -> Dense(dim) + mid vector
                -> Dense(dim, relu) -> Dense(dim, relu) -> Dense(256) = logits for x[t]

Every Dense and RNN kernel is weight-normalised (w = g * v / ||v||, g starting at the initial
column norms, so the layer starts as plain), and each RNN layer has a learned initial state used
when a batch starts (`reset`).

A conditioned model (ModelConfig.labels) adds a learned vector per label to the input of every
tier: to the gate pre-activations of each frame tier's first RNN layer (its input projection) and
to the sample MLP's first layer, before h1 -- the global conditioning of WaveNet. A label is given
as `mix`, a row of weights over the labels per sequence (one-hot in training, any mixture at
generation), so the vector is mix @ table.

Each tier is written once and has two forms: `call` over a whole chunk (training, priming) and
`step` (generation), where consecutive linear layers are fused once per generation by
`step_weights` to read fewer bytes per sample. Tests hold the two forms equal.

Precision (srnn.precision): `SampleRNN(cfg, precision="mixed_bfloat16")` puts a Keras mixed policy
on every tier, so the chunk form computes in 16 bits around float32 weights (the logits stay
float32); the step form always computes in float32, and its matrices may be packed in bfloat16 or
int8 (srnn.packed).
"""
import typing

from . import engine
from .cells import CELLS
from .config import ModelConfig
from .packed import matmul as matmul_2d, step_format

E = engine.load()
import keras  # noqa: E402  (after the engine has loaded its framework quietly)
from keras import ops  # noqa: E402

LOG2E = 1.4426950408889634  # nats -> bits


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


# ---- the step form's weights: fused once per generation (step_weights), read at every step

class Projection(typing.NamedTuple):
    """How a tier reads the vector the tier above emits: through `kernel` (and `bias`), applied by
    the tier above after its output layer, or folded into that layer (`fold`). `name`: the
    kernel's checkpoint name (a sparse sampler's key, srnn.packed.StepFormat)."""
    kernel: object
    bias: object = None
    fold: bool = False
    name: str = None


class RNNWeights(typing.NamedTuple):
    """One RNN layer's effective kernels: input (wx, bx) and recurrent (wh, bh)."""
    wx: object
    bx: object
    wh: object
    bh: object


class FrameStepWeights(typing.NamedTuple):
    """A frame tier's step: its RNN layers (the first one's input kernel used only on top), the
    input layer folded into the first RNN's input kernel (in_wx, in_bx; not on top), the output
    layer (out_w, out_b; with the tier below's projection folded in where `below.fold`), the tier
    below's projection, and the label table (conditioned tiers)."""
    rnn: list
    in_wx: object
    in_bx: object
    out_w: object
    out_b: object
    below: Projection
    label: object = None

    def matrices(self):
        """The matrices a step reads, for `auto`'s measure of bytes (srnn.packed); the projection
        counts even where it is folded (the sampler's choices have always counted it)."""
        return ([m for r in self.rnn for m in (r.wx, r.wh)] + [m for m in (self.in_wx, self.out_w) if m is not None]
                + [self.below.kernel])


class SampleStepWeights(typing.NamedTuple):
    """The sample MLP's step: the embedding tables through the input layer and h1 (gathered, one
    row a sample), h2 and the output layer, and the label vectors through h1 (conditioned)."""
    tables: list
    h2: tuple
    out: tuple
    label: object = None

    def matrices(self):
        return [self.h2[0], self.out[0]]


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


# ---- the tiers

class FrameTier(keras.layers.Layer):
    """A frame-level tier: an RNN stack over frames of `frame` samples, conditioned by the tier
    above (except the top tier), emitting `ratio` vectors of `out_units` per step for the tier
    below."""

    def __init__(self, frame, ratio, units, out_units, cell="gru", layers=1, skip=False, top=False,
                 n_labels=0, sparse=False, **kwargs):
        super().__init__(**kwargs)
        self.frame, self.ratio, self.units, self.out_units = frame, ratio, units, out_units
        self.skip, self.top, self.sparse = skip, top, sparse
        # Built here, with their known input widths, in the order the weights are drawn (the same
        # order as before tiers were layers, so a seed gives the same initial model).
        dtype = self.dtype_policy  # the tier's precision policy, for each of its layers
        if not top:  # the top tier's RNN reads the scaled frame itself
            self.inp = WNDense(units, name="in", dtype=dtype)
            self.inp.build((None, frame))
        self.rnns = []
        for i in range(layers):
            # a sparse model prunes every RNN matrix but the top tier's first input one (srnn.sparse)
            rnn = WNRNN(units, cell, pruned=(sparse and not (top and i == 0), sparse), name=f"rnn{i}", dtype=dtype)
            rnn.build((None, None, frame if (top and i == 0) else units))
            self.rnns.append(rnn)
        self.out = WNDense(out_units * ratio, pruned=sparse, name="out", dtype=dtype)
        self.out.build((None, units * (layers if skip else 1)))
        self.label = _label_table(n_labels, CELLS[cell].gates * units, dtype)  # into the first RNN's gates
        self.built = True

    def parts(self):
        """The weight layers, in order."""
        labelled = [] if self.label is None else [self.label]
        return ([] if self.top else [self.inp]) + self.rnns + [self.out] + labelled

    def state_sizes(self):
        return [rnn.state_size for rnn in self.rnns]

    def initial_states(self, batch):
        return [ops.broadcast_to(rnn.h0, (batch, rnn.state_size)) for rnn in self.rnns]

    def _top_input(self, hs):
        return ops.concatenate(hs, axis=-1) if self.skip else hs[-1]

    def call(self, frames, cond, states, reset, mix=None):
        """Chunk form. frames (batch, n, frame) scaled samples; cond (batch, n, units) from the tier
        above, or None on top; states one per RNN layer; mix (batch, n_labels) for a conditioned
        tier. Returns (vectors (batch, n*ratio, out_units), new states)."""
        x = frames if self.top else self.inp(frames) + cond
        extra = self.label(mix) if self.label is not None else None
        hs, new = [], []
        for rnn, state in zip(self.rnns, states):
            x, last = rnn(x, rnn.start_state(state, reset), extra)
            extra = None  # the first layer's input only
            hs.append(x)
            new.append(last)
        y = self.out(self._top_input(hs))
        return ops.reshape(y, (ops.shape(y)[0], -1, self.out_units)), new

    # ---- step form

    def cond_projection(self, fmt=None):
        """How this tier reads a vector from the tier above: through its first RNN layer's input
        kernel (applied by the tier above, after its own output layer, since folding the two
        would read more bytes than it saves)."""
        return Projection(self.rnns[0].input_kernel(), name=f"{self.name}/{self.rnns[0].name}/vx")

    def step_weights(self, below, precision="float32"):
        """The fused weights of a step (FrameStepWeights), computed once per generation. `below` is
        the consumer's cond_projection(): its input kernel, and whether to fold it into this tier's
        output. The matrices a step multiplies are packed in `precision` (a StepFormat or a
        precision's name, srnn.packed) once fused; a block-sparse one is a pruned kernel itself."""
        fmt = step_format(precision)
        rnn = [RNNWeights(*r.kernels()) for r in self.rnns]
        in_wx = in_bx = None
        if not self.top:  # the input layer folded into the first RNN layer's input kernel
            in_wx = ops.matmul(self.inp.kernel(), rnn[0].wx)
            in_bx = E.matvec_t(rnn[0].wx, self.inp.b) + rnn[0].bx
        out_w, out_b = self.out.kernel(), self.out.b
        if below.fold:  # e.g. the sample MLP's first hidden layer, applied to each emitted vector
            p = below.kernel
            out_w = ops.concatenate([ops.matmul(block, p) for block in _blocks(out_w, self.ratio)], axis=1)
            out_b = ops.concatenate([E.matvec_t(p, block) + below.bias for block in _blocks(out_b, self.ratio)],
                                    axis=0)
        # the label table: mix @ it gives one vector per sequence, once per generation
        label = self.label.table if self.label is not None else None
        w = FrameStepWeights(rnn, in_wx, in_bx, out_w, out_b, below, label)
        if fmt == step_format("float32"):
            return w
        p = fmt.pack
        names = [f"{self.name}/{r.name}" for r in self.rnns]
        return w._replace(rnn=[r._replace(wx=p(r.wx, f"{n}/vx"), wh=p(r.wh, f"{n}/vh")) for r, n in zip(rnn, names)],
                          # folded with the layer below, the output layer is a product: dense, whatever its zeros
                          in_wx=None if in_wx is None else p(in_wx),
                          out_w=p(out_w, None if below.fold else f"{self.name}/out/v"),
                          below=below if below.fold else below._replace(kernel=p(below.kernel, below.name)))

    def step(self, w, frame, cond, states, label=None):
        """One step of `w = step_weights(...)`: frame (batch, frame) scaled; cond (batch, gates*units)
        the tier above's vector already through this tier's input kernel (None on top); label
        (batch, gates*units) the sequences' label vectors (conditioned tiers). Returns (the vectors
        for the tier below, through its projection: (batch, ratio, width); states)."""
        first = w.rnn[0]
        xp = matmul(frame, first.wx) + first.bx if self.top else matmul(frame, w.in_wx) + w.in_bx + cond
        if label is not None:
            xp = xp + label
        hs, new = [], []
        for i, (rnn, state) in enumerate(zip(self.rnns, states)):
            if i:
                xp = matmul(hs[-1], w.rnn[i].wx) + w.rnn[i].bx
            state = rnn.step(xp, state, w.rnn[i].wh, w.rnn[i].bh)
            new.append(state)
            hs.append(rnn.hidden(state))
        y = matmul(self._top_input(hs), w.out_w) + w.out_b
        B = ops.shape(y)[0]
        if w.below.fold:
            return ops.reshape(y, (B, self.ratio, -1)), new
        y = matmul(ops.reshape(y, (B * self.ratio, self.out_units)), w.below.kernel)
        if w.below.bias is not None:  # the sample MLP's h1, not folded into a sparse model's output layer
            y = y + w.below.bias
        return ops.reshape(y, (B, self.ratio, -1)), new

    def get_config(self):
        return {**super().get_config(), "frame": self.frame, "ratio": self.ratio, "units": self.units,
                "out_units": self.out_units, "cell": self.rnns[0].cell_name, "layers": len(self.rnns),
                "skip": self.skip, "top": self.top, "sparse": self.sparse,
                "n_labels": self.label.n_labels if self.label is not None else 0}


class SampleTier(keras.layers.Layer):
    """The sample-level MLP: the previous `context` samples embedded, plus the bottom frame tier's
    vector, through two ReLU layers to q_levels logits."""

    def __init__(self, context, units, q_levels, emb_size, n_labels=0, sparse=False, **kwargs):
        super().__init__(**kwargs)
        self.context, self.units, self.q_levels, self.emb_size = context, units, q_levels, emb_size
        self.sparse = sparse
        dtype = self.dtype_policy
        self.embedding = keras.layers.Embedding(
            q_levels, emb_size, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="embedding", dtype=dtype)
        self.embedding.build((None,))
        self.inp = WNDense(units, use_bias=False, kernel_initializer="lecun_uniform", name="in", dtype=dtype)
        self.inp.build((None, context * emb_size))
        self.h1 = WNDense(units, pruned=sparse, name="h1", dtype=dtype)
        self.h1.build((None, units))
        self.h2 = WNDense(units, pruned=sparse, name="h2", dtype=dtype)
        self.h2.build((None, units))
        # the logits are float32 in every precision: the softmax and the loss in bits are float32's
        self.out = WNDense(q_levels, kernel_initializer="lecun_uniform", pruned=sparse, name="out", dtype="float32")
        self.out.build((None, units))
        self.label = _label_table(n_labels, units, dtype)  # added where the tier above's vector is
        self.built = True

    def parts(self):
        return [self.embedding, self.inp, self.h1, self.h2, self.out] + ([] if self.label is None else [self.label])

    def tables(self):
        """The input layer is linear in the embeddings, so the embedding table times its slice of
        that layer is a (q_levels, units) lookup table per context position: a gather replaces a
        (batch*time, context*emb) @ (context*emb, units) matmul. Same maths, same gradients."""
        w_in, emb, e = self.inp.kernel(), self.embedding.embeddings, self.emb_size
        return [ops.matmul(E.tensor(emb), w_in[k * e:(k + 1) * e]) for k in range(self.context)]

    def call(self, prev, cond, mix=None):
        """Chunk form. prev: `context` int tensors (batch, time) of the previous samples (oldest
        first); cond (batch, time, units) the bottom frame tier's vector; mix (batch, n_labels) for
        a conditioned tier. Returns logits (batch, time, q_levels)."""
        h = cond
        for table, p in zip(self.tables(), prev):
            h = h + E.gather(table, p)
        if self.label is not None:
            h = h + self.label(mix)[:, None, :]
        return self.out(ops.relu(self.h2(ops.relu(self.h1(h)))))

    def cond_projection(self, fmt=None):
        """The vector from above goes only through h1 (after the tables are added), so the tier
        above folds h1 into its output layer: (dim, ratio*dim) instead of two matrices. Not where
        both are block-sparse: their product would be dense, more bytes than the two."""
        name = f"{self.name}/h1/v"
        return Projection(self.h1.kernel(), self.h1.b, fold=not step_format(fmt or "float32").is_sparse(name),
                          name=name)

    def step_weights(self, precision="float32"):
        """The tables (gathered: one row read per sample, so kept float32), and h2 and the output
        layer packed in `precision` (a StepFormat or a precision's name; SampleStepWeights)."""
        w1, fmt = self.h1.kernel(), step_format(precision)
        return SampleStepWeights(
            tables=[ops.matmul(t, w1) for t in self.tables()],  # the tables through h1 too
            h2=(fmt.pack(self.h2.kernel(), f"{self.name}/h2/v"), self.h2.b),
            out=(fmt.pack(self.out.kernel(), f"{self.name}/out/v"), self.out.b),
            label=None if self.label is None else ops.matmul(E.tensor(self.label.table), w1))  # and the labels

    def step(self, w, prev, cond, label=None):
        """One sample: cond already through h1 (with its bias); label (batch, units) the sequences'
        label vectors through h1 (conditioned tier). Returns logits (batch, q_levels)."""
        h = cond
        for table, p in zip(w.tables, prev):
            h = h + E.gather(table, p)
        if label is not None:
            h = h + label
        (w2, b2), (wo, bo) = w.h2, w.out
        h = ops.relu(matmul(ops.relu(h), w2) + b2)
        return matmul(h, wo) + bo

    def get_config(self):
        return {**super().get_config(), "context": self.context, "units": self.units,
                "q_levels": self.q_levels, "emb_size": self.emb_size, "sparse": self.sparse,
                "n_labels": self.label.n_labels if self.label is not None else 0}


class SampleRNN(keras.Model):
    """The frame tiers and the sample MLP. `forward` runs one training chunk; `frame_step` one big
    frame of generation (srnn.sampler compiles the loop over it, srnn.generation runs a generation)."""

    def __init__(self, config=None, precision="float32", **kwargs):
        super().__init__(name=kwargs.pop("name", "sample_rnn"), **kwargs)
        c = self.cfg = config or ModelConfig()
        widths, ratios = c.widths(), c.ratios()
        # the chunk form's precision (srnn.precision): a Keras dtype policy on every tier; the
        # weights are float32 in all of them, and the step form (generation) computes in float32
        self.precision = precision
        dtype = None if precision == "float32" else precision
        # Built in __init__ with known widths, so weights exist right after construction (loading
        # a checkpoint and counting parameters need no dummy call).
        self.frame_tiers = [
            FrameTier(frame=f, ratio=r, units=widths[k], out_units=(widths + [c.dim])[k + 1], cell=c.rnn,
                      layers=c.rnn_layers, skip=c.skip, top=(k == 0), n_labels=c.n_labels,
                      sparse=bool(c.sparse_block), name=f"frame{k}", dtype=dtype)
            for k, (f, r) in enumerate(zip(c.frames, ratios))
        ]
        self.sample_tier = SampleTier(c.frame, c.dim, c.q_levels, c.emb_size, n_labels=c.n_labels, name="sample",
                                      sparse=bool(c.sparse_block), dtype=dtype)
        self.built = True
        self._samplers = {}

    @property
    def tiers(self):
        return self.frame_tiers + [self.sample_tier]

    def prunable_kernels(self):
        """{checkpoint name of v: a function giving its effective kernel} of the matrices a sparse
        model prunes (srnn.sparse.mask_suffixes), whether or not this one does: the sampler looks
        at their zeros to choose its layout."""
        out = {}
        for tier in self.tiers:
            for part in tier.parts():
                if isinstance(part, WNDense):
                    out[f"{tier.name}/{part.name}/v"] = part.kernel
                elif isinstance(part, WNRNN):
                    out[f"{tier.name}/{part.name}/vx"] = part.input_kernel
                    out[f"{tier.name}/{part.name}/vh"] = lambda part=part: part.kernels()[2]
        from .sparse import mask_suffixes

        return {name: out[name] for name in mask_suffixes(self.cfg)}

    def pruned_kernels(self):
        """{checkpoint name of v: (v, g, mask)} of a sparse model's pruned kernels (srnn.prune)."""
        return {f"{tier.name}/{part.name}/{v.name}": (v, g, mask) for tier in self.tiers for part in tier.parts()
                for v, g, mask in getattr(part, "pruned_kernels", list)()}

    def named_weights(self):
        """(name, variable) in a fixed order; checkpoint names are `tier/layer/weight`, e.g.
        `frame0/rnn0/vx`, `frame1/in/v`, `sample/embedding/embeddings`."""
        return [(f"{tier.name}/{part.name}/{w.name}", w) for tier in self.tiers for part in tier.parts()
                for w in part.weights]

    def get_config(self):
        return {"config": self.cfg.to_json()}

    @classmethod
    def from_config(cls, config):
        return cls(ModelConfig.from_json(config["config"]))

    # ---- carried states: one tensor per RNN layer, top tier first

    def state_sizes(self):
        return [n for tier in self.frame_tiers for n in tier.state_sizes()]

    def zero_states(self, batch):
        return tuple(ops.zeros((batch, n)) for n in self.state_sizes())

    def initial_states(self, batch):
        """The learned initial states, tiled over the batch (where generation starts)."""
        return tuple(s for tier in self.frame_tiers for s in tier.initial_states(batch))

    def _per_tier(self, states):
        out, i = [], 0
        for tier in self.frame_tiers:
            out.append(list(states[i:i + len(tier.rnns)]))
            i += len(tier.rnns)
        return out

    # ---- training graph

    def _mix(self, mix):
        """The label weights the tiers read: None for an unconditional model (which ignores any
        `mix`, e.g. the empty one training passes), required for a conditioned one."""
        if not self.cfg.labels:
            return None
        if mix is None:
            raise ValueError(f"this model is conditioned on labels ({', '.join(self.cfg.labels)}): "
                             f"pass mix, a (batch, {self.cfg.n_labels}) row of label weights per sequence")
        return mix

    def conditioning(self, x, states, reset, mix=None):
        """The frame tiers over a chunk: the bottom tier's vector per target (batch, cutlen, dim)
        and the last states. Priming needs only this part. `mix` (batch, n_labels): the label
        weights of each sequence, for a conditioned model."""
        c = self.cfg
        mix = self._mix(mix)
        bf, B, T = c.big_frame, ops.shape(x)[0], ops.shape(x)[1] - c.big_frame
        xs = scale_levels(x, c.q_levels)
        cond, new = None, []
        for tier, tier_states in zip(self.frame_tiers, self._per_tier(states)):
            f = tier.frame
            frames = ops.reshape(xs[:, bf - f:bf - f + T], (B, T // f, f))  # each target's frame
            cond, last = tier(frames, cond=cond, states=tier_states, reset=reset, mix=mix)
            new += [ops.cast(s, "float32") for s in last]  # carried between chunks as float32
        return cond, tuple(new)

    def forward(self, x, states, reset, mix=None):
        """One chunk. x (batch, cutlen + big_frame) int levels; states the carried states (ignored
        where `reset`); mix (batch, n_labels) the label weights (a conditioned model). Returns
        logits (batch, cutlen, q_levels) for the targets x[:, big_frame:], and the last states."""
        cond, states = self.conditioning(x, states, reset, mix)
        bf, fr, T = self.cfg.big_frame, self.cfg.frame, ops.shape(x)[1] - self.cfg.big_frame
        prev = [x[:, bf - fr + j: bf - fr + j + T] for j in range(fr)]
        return self.sample_tier(prev, cond, self._mix(mix)), states

    def call(self, inputs):
        return self.forward(*inputs)

    # ---- generation

    def step_weights(self, precision="float32"):
        """Every tier's fused step weights, once per generation; the matrices a step multiplies in
        `precision` (srnn.packed: float32, bfloat16 or int8, or a StepFormat with the block-sparse
        layout of a pruned model's matrices)."""
        below = [t.cond_projection(precision) for t in self.tiers[1:]]
        return ([t.step_weights(b, precision) for t, b in zip(self.frame_tiers, below)]
                + [self.sample_tier.step_weights(precision)])

    def frame_step(self, weights, labels, frame, states, draw):
        """One big frame of generation in the step form: the top tier's step on the last big frame
        `frame` (batch, big frame) of levels, then for each vector it emits the steps of the tier
        below, down to the sample MLP, whose logits `draw(logits, j)` (j: the sample's place in
        the frame) turns into the level that goes on. `weights` = step_weights(), `labels` =
        label_vectors(). Returns (the new big frame (batch, big frame) of levels, the states)."""
        c = self.cfg
        per_tier = self._per_tier(states)
        history = ops.unstack(frame, num=c.big_frame, axis=1)  # the previous big frame, oldest first
        new = []

        def descend(k, cond):
            """Tier k's step (given the vector from above), then everything below it."""
            if k == len(self.frame_tiers):
                logits = self.sample_tier.step(weights[k], (history + new)[-c.frame:], cond, labels[k])
                new.append(draw(logits, len(new)))
                return
            tier = self.frame_tiers[k]
            ctx = frame if k == 0 else ops.stack((history + new)[-tier.frame:], 1)
            vectors, per_tier[k] = tier.step(weights[k], scale_levels(ctx, c.q_levels), cond, per_tier[k], labels[k])
            for j in range(tier.ratio):
                descend(k + 1, vectors[:, j])

        descend(0, None)
        return ops.stack(new, axis=1), tuple(s for tier in per_tier for s in tier)

    def label_vectors(self, weights, mix):
        """Per tier, each sequence's label vector in its step form (mix @ the tier's step table):
        constant through a generation, so computed once. None per tier when unconditional."""
        mix = self._mix(mix)
        return [None if mix is None else ops.matmul(ops.cast(mix, "float32"), w.label) for w in weights]

    def sampler(self, xla=True, precision="auto", layout="auto"):
        """The compiled generation loop (srnn.sampler), one per setting; `precision` of its step
        weights (srnn.packed), `layout` of the pruned matrices (auto, dense or sparse). A
        generation as a whole goes through srnn.generation."""
        from .sampler import Sampler

        if (xla, precision, layout) not in self._samplers:
            self._samplers[xla, precision, layout] = Sampler(self, xla=xla, precision=precision, layout=layout)
        return self._samplers[xla, precision, layout]


def label_bits(logits, targets, mask, mix):
    """Per label, the cross-entropy in bits summed over the real samples of its sequences
    (n_labels,), for the per-label losses (each label's sum over its count, mix^T @ the rows' real
    samples). With a mixture row a sequence counts towards each label by its weight."""
    ce = E.cross_entropy(targets, logits)
    return E.matvec_t(ops.cast(mix, "float32"), ops.sum(ce * mask, axis=1)) * LOG2E


def loss_bits(logits, targets, mask, count=None):
    """Masked mean softmax cross-entropy in bits per sample: the 'cost in bits' of the original.
    `count` is the number of real samples to divide by (default: this mask's); a replica of a
    distributed step divides its own sum by the whole batch's count."""
    ce = E.cross_entropy(targets, logits)
    count = ops.maximum(ops.sum(mask), 1.0) if count is None else count
    return ops.sum(ce * mask) / count * LOG2E
