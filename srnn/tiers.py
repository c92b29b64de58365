"""The tiers of a SampleRNN (srnn.model puts them together): the frame tiers and the sample MLP,
each written once in two forms, `call` over a whole chunk (training, priming) and `step` (one step
of generation), whose consecutive linear layers `step_weights` fuses once per generation to read
fewer bytes per sample (the NamedTuples below hold the fused weights)."""
import typing

from . import engine
from .cells import CELLS
from .layers import WNDense, WNRNN, _blocks, _label_table, matmul
from .packed import step_format

E = engine.module()
import keras  # noqa: E402  (after the engine has loaded its framework quietly)
from keras import ops  # noqa: E402


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

    def sublayers(self):
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

    def sublayers(self):
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
