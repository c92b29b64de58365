"""The three-tier SampleRNN (Mehri et al., ICLR 2017) as one Keras 3 model.

For a chunk x of shape (batch, cutlen + 8) of integer levels:

    slow tier   x[:, :-8] in frames of 8 -> GRU(slowdim) -> Dense(4*dim): one vector per mid frame
    mid tier    x[:, 6:-2] in frames of 2 -> Dense(dim) + slow vector -> GRU(dim) -> Dense(2*dim)
    sample tier x[t-2], x[t-1] -> Embedding(256) each -> Dense(dim) + mid vector
                -> Dense(dim, relu) -> Dense(dim, relu) -> Dense(256) = logits for x[t]

Every Dense and GRU kernel is weight-normalised (w = g * v / ||v||, g starting at the initial
column norms, so the layer starts as plain), and each GRU has a learned initial state used when a
batch starts (`reset`). The layers only own weights and produce their effective kernels; the maths
is in the functions below, shared by the training graph (`SampleRNN.forward`) and the sampler
(`srnn.sample`, which also fuses consecutive linear layers to read fewer bytes per sample), so
both compute the same thing; tests hold them equal.
"""
from .config import ModelConfig
from .quiet import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402  (after TensorFlow is initialised quietly)

LOG2E = 1.4426950408889634  # nats -> bits


def scale_levels(levels, q_levels):
    """Integer levels -> floats in [-2, 2), the reference's input scaling."""
    return (tf.cast(levels, tf.float32) / (q_levels / 2.0) - 1.0) * 2.0


def matmul(x, w):
    """(..., n) @ (n, m) -> (..., m) as one 2-D GEMM (faster than a batched matmul)."""
    if x.shape.rank == 2:
        return tf.matmul(x, w)
    lead = tf.shape(x)[:-1]
    y = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), w)
    return tf.reshape(y, tf.concat([lead, tf.shape(w)[-1:]], 0))


def weight_norm(v, g):
    """w = g * v / ||v||, the norm taken over the input axis (one per output unit)."""
    return v * (g / tf.sqrt(tf.reduce_sum(tf.square(v), axis=0)))


def gru_step(xp, h, wh, bh):
    """One GRU step. xp = x @ wx + bx, precomputed (batch, 3*units); h (batch, units).

    Gates are logistic sigmoids (the original set this explicitly; Keras 2's default was the hard
    sigmoid). The reset gate is applied after the recurrent matmul (the cuDNN / Keras
    `reset_after=True` variant), so each step is one (batch, units) @ (units, 3*units) matmul
    instead of two dependent ones; the Theano reference applied it before.
    """
    return _gru_parts(xp, h, wh, bh)[0]


def _gru_parts(xp, h, wh, bh):
    """The new state and what its gradient needs: (h_new, z, r, c, hc)."""
    hp = tf.matmul(h, wh) + bh
    xz, xr, xc = tf.split(xp, 3, axis=-1)
    hz, hr, hc = tf.split(hp, 3, axis=-1)
    z = tf.sigmoid(xz + hz)
    r = tf.sigmoid(xr + hr)
    c = tf.tanh(xc + r * hc)
    return z * h + (1.0 - z) * c, z, r, c, hc


def gru_sequence(xp, h, wh, bh):
    """Run the GRU over time. xp (batch, time, 3*units) already projected; returns
    (outputs (batch, time, units), last state (batch, units)).

    The gradient is written by hand: autodiff of the scan adds each step's outer product into
    the (units, 3*units) recurrent-weight gradient inside the loop, which at dim 1024 moves 12 MB
    per step and made the backward pass 9x the forward. Here the reverse scan carries only dh and
    emits the per-step gate gradients; dW_h is then one (time*batch)-row GEMM.
    """
    # Variables are read here, outside the custom-gradient function, which takes tensors only.
    return _gru_sequence(*(tf.convert_to_tensor(a) for a in (xp, h, wh, bh)))


@tf.custom_gradient
def _gru_sequence(xp, h, wh, bh):
    zeros = tf.zeros_like(h)

    hs, zs, rs, cs, hcs = tf.scan(lambda carry, xt: _gru_parts(xt, carry[0], wh, bh),
                                  tf.transpose(xp, [1, 0, 2]), initializer=(h, zeros, zeros, zeros, zeros))

    def grad(d_outs, d_last):
        units = tf.shape(h)[-1]
        d_outs = tf.zeros_like(xp[..., :units]) if d_outs is None else d_outs
        d_last = zeros if d_last is None else d_last
        h_prevs = tf.concat([h[None], hs[:-1]], axis=0)  # (time, batch, units): each step's input state
        wh_t = tf.transpose(wh)

        def back(carry, inputs):
            d_out, h_prev, z, r, c, hc = inputs
            dh = carry[0] + d_out
            daz = dh * (h_prev - c) * z * (1.0 - z)
            dac = dh * (1.0 - z) * (1.0 - c * c)
            dar = dac * hc * r * (1.0 - r)
            dhp = tf.concat([daz, dar, dac * r], axis=-1)
            return dh * z + tf.matmul(dhp, wh_t), tf.concat([daz, dar, dac], axis=-1), dhp

        init = (d_last, tf.zeros_like(xp[:, 0]), tf.zeros_like(xp[:, 0]))
        dhs, dxps, dhps = tf.scan(back, (tf.transpose(d_outs, [1, 0, 2]), h_prevs, zs, rs, cs, hcs),
                                  initializer=init, reverse=True)
        flat_dhp = tf.reshape(dhps, [-1, 3 * units])
        d_wh = tf.matmul(tf.reshape(h_prevs, [-1, units]), flat_dhp, transpose_a=True)
        return tf.transpose(dxps, [1, 0, 2]), dhs[0], d_wh, tf.reduce_sum(flat_dhp, axis=0)

    return (tf.transpose(hs, [1, 0, 2]), hs[-1]), grad


def add_weight_norm(layer, suffix, shape, initializer):
    """A weight-normalised kernel's weights `v{suffix}` and `g{suffix}`, g starting at the column
    norms of the initial v so that the layer starts as its plain counterpart (w == v)."""
    v = layer.add_weight(name=f"v{suffix}", shape=shape, initializer=initializer)
    g = layer.add_weight(name=f"g{suffix}", shape=(shape[-1],), initializer="ones")
    g.assign(tf.norm(v, axis=0))
    return v, g


class WNDense(keras.layers.Layer):
    """Weights of a weight-normalised Dense layer; `kernel()` gives the effective matrix."""

    def __init__(self, units, use_bias=True, kernel_initializer="he_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units, self.use_bias = units, use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.v, self.g = add_weight_norm(self, "", (input_shape[-1], self.units), self.kernel_initializer)
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros") if self.use_bias else None

    def kernel(self):
        return weight_norm(self.v, self.g)

    def call(self, x):
        y = matmul(x, self.kernel())
        return y + self.b if self.use_bias else y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


class WNGRU(keras.layers.Layer):
    """Weights of a GRU with weight-normalised input and recurrent kernels and a learned,
    zero-initialised initial state `h0`."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        u3 = 3 * self.units
        self.vx, self.gx = add_weight_norm(self, "x", (input_shape[-1], u3), "glorot_uniform")
        self.vh, self.gh = add_weight_norm(self, "h", (self.units, u3), "orthogonal")
        self.bx = self.add_weight(name="bx", shape=(u3,), initializer="zeros")
        self.bh = self.add_weight(name="bh", shape=(u3,), initializer="zeros")
        self.h0 = self.add_weight(name="h0", shape=(self.units,), initializer="zeros")

    def kernels(self):
        """(wx, bx, wh, bh) effective weights."""
        return weight_norm(self.vx, self.gx), self.bx, weight_norm(self.vh, self.gh), self.bh

    def start_state(self, h, reset):
        """The learned h0 (tiled over the batch) where `reset` is 1, the carried `h` otherwise.
        A blend rather than a select so h0 gets its gradient only from chunks that use it."""
        reset = tf.cast(reset, tf.float32)
        return reset * tf.broadcast_to(self.h0, tf.shape(h)) + (1.0 - reset) * h

    def call(self, x, h):
        wx, bx, wh, bh = self.kernels()
        return gru_sequence(matmul(x, wx) + bx, h, wh, bh)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class SampleRNN(keras.Model):
    """The three tiers. `forward` runs the training graph over one chunk; `kernels` gives the
    effective weights for the sampler's step functions."""

    def __init__(self, config=None, **kwargs):
        super().__init__(name=kwargs.pop("name", "sample_rnn"), **kwargs)
        c = self.cfg = config or ModelConfig()
        D = c.dim
        # Built here, with their known input widths, so weights exist right after construction
        # (loading a checkpoint and counting parameters need no dummy call).
        self.slow_gru = WNGRU(c.slowdim, name="slow_gru")
        self.slow_gru.build((None, None, c.big_frame))
        self.slow_out = WNDense(D * c.mids_per_slow, name="slow_out")
        self.slow_out.build((None, c.slowdim))
        self.mid_in = WNDense(D, name="mid_in")
        self.mid_in.build((None, c.frame))
        self.mid_gru = WNGRU(D, name="mid_gru")
        self.mid_gru.build((None, None, D))
        self.mid_out = WNDense(D * c.frame, name="mid_out")
        self.mid_out.build((None, D))
        self.embedding = keras.layers.Embedding(
            c.q_levels, c.emb_size, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="embedding")
        self.embedding.build((None,))
        self.sample_in = WNDense(D, use_bias=False, kernel_initializer="lecun_uniform", name="sample_in")
        self.sample_in.build((None, c.frame * c.emb_size))
        self.sample_h1 = WNDense(D, name="sample_h1")
        self.sample_h1.build((None, D))
        self.sample_h2 = WNDense(D, name="sample_h2")
        self.sample_h2.build((None, D))
        self.sample_out = WNDense(c.q_levels, kernel_initializer="lecun_uniform", name="sample_out")
        self.sample_out.build((None, D))
        self.built = True

    @property
    def tiers(self):
        """The layers in a fixed order; checkpoint names are `layer/weight`."""
        return [self.slow_gru, self.slow_out, self.mid_in, self.mid_gru, self.mid_out,
                self.embedding, self.sample_in, self.sample_h1, self.sample_h2, self.sample_out]

    def named_weights(self):
        return [(f"{layer.name}/{w.name}", w) for layer in self.tiers for w in layer.weights]

    def get_config(self):
        return {"config": self.cfg.to_json()}

    @classmethod
    def from_config(cls, config):
        return cls(ModelConfig.from_json(config["config"]))

    def zero_states(self, batch):
        return (tf.zeros((batch, self.cfg.slowdim)), tf.zeros((batch, self.cfg.dim)))

    # ---- effective weights, computed once per step (training) or once per generation (sampling)

    def kernels(self):
        c = self.cfg
        w_in = self.sample_in.kernel()
        emb = self.embedding.embeddings
        # The first sample-tier layer is linear in the embeddings, so the embedding table times its
        # slice of that layer is a (q_levels, dim) lookup table per context position: a gather
        # replaces a (batch*time, 512) @ (512, dim) matmul. Same maths, same gradients.
        tables = [tf.matmul(emb, w_in[k * c.emb_size:(k + 1) * c.emb_size]) for k in range(c.frame)]
        return {
            "slow": self.slow_gru.kernels(), "slow_out": (self.slow_out.kernel(), self.slow_out.b),
            "mid_in": (self.mid_in.kernel(), self.mid_in.b), "mid": self.mid_gru.kernels(),
            "mid_out": (self.mid_out.kernel(), self.mid_out.b), "tables": tables,
            "h1": (self.sample_h1.kernel(), self.sample_h1.b),
            "h2": (self.sample_h2.kernel(), self.sample_h2.b),
            "out": (self.sample_out.kernel(), self.sample_out.b),
        }

    @staticmethod
    def sample_logits(k, prev, cond):
        """Sample tier. prev: list of `frame` int tensors (...,) of the previous samples (oldest
        first); cond (..., dim) the mid-tier vector. Returns logits (..., q_levels)."""
        h = cond
        for table, p in zip(k["tables"], prev):
            h = h + tf.gather(table, p)
        h = tf.nn.relu(matmul(h, k["h1"][0]) + k["h1"][1])
        h = tf.nn.relu(matmul(h, k["h2"][0]) + k["h2"][1])
        return matmul(h, k["out"][0]) + k["out"][1]

    # ---- training graph

    def forward(self, x, h_slow, h_mid, reset):
        """One chunk. x (batch, cutlen + big_frame) int levels; h_slow (batch, slowdim) and
        h_mid (batch, dim) the states carried from the previous chunk (ignored where `reset`).
        Returns logits (batch, cutlen, q_levels) for the targets x[:, big_frame:], and the last
        states (batch, slowdim), (batch, dim)."""
        k = self.kernels()
        mid_cond, h_slow, h_mid = self.conditioning(x, h_slow, h_mid, reset, k)
        bf, fr, T = self.cfg.big_frame, self.cfg.frame, tf.shape(x)[1] - self.cfg.big_frame
        prev = [x[:, bf - fr + j: bf - fr + j + T] for j in range(fr)]
        return self.sample_logits(k, prev, mid_cond), h_slow, h_mid

    def conditioning(self, x, h_slow, h_mid, reset, k=None):
        """The slow and mid tiers over a chunk: the mid vector per target (batch, cutlen, dim) and
        the last states. Priming needs only this part."""
        c, k = self.cfg, k or self.kernels()
        bf, fr, D = c.big_frame, c.frame, c.dim
        B = tf.shape(x)[0]
        T = tf.shape(x)[1] - bf
        xs = scale_levels(x, c.q_levels)

        wx, bx, wh, bh = k["slow"]
        slow_frames = tf.reshape(xs[:, :-bf], [B, T // bf, bf])
        slow_h, h_slow = gru_sequence(matmul(slow_frames, wx) + bx,
                                      self.slow_gru.start_state(h_slow, reset), wh, bh)
        slow_cond = tf.reshape(matmul(slow_h, k["slow_out"][0]) + k["slow_out"][1], [B, T // fr, D])

        wx, bx, wh, bh = k["mid"]
        mid_frames = tf.reshape(xs[:, bf - fr:-fr], [B, T // fr, fr])
        mid_x = matmul(mid_frames, k["mid_in"][0]) + k["mid_in"][1] + slow_cond
        mid_h, h_mid = gru_sequence(matmul(mid_x, wx) + bx, self.mid_gru.start_state(h_mid, reset), wh, bh)
        mid_cond = tf.reshape(matmul(mid_h, k["mid_out"][0]) + k["mid_out"][1], [B, T, D])
        return mid_cond, h_slow, h_mid

    def call(self, inputs):
        x, h_slow, h_mid, reset = inputs
        return self.forward(x, h_slow, h_mid, reset)


def loss_bits(logits, targets, mask, count=None):
    """Masked mean softmax cross-entropy in bits per sample: the 'cost in bits' of the original.
    `count` is the number of real samples to divide by (default: this mask's); a replica of a
    distributed step divides its own sum by the whole batch's count."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    count = tf.maximum(tf.reduce_sum(mask), 1.0) if count is None else count
    return tf.reduce_sum(ce * mask) / count * LOG2E
