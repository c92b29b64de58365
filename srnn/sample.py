"""Generation: the autoregressive loop, compiled, for many sequences at once.

One `tf.while_loop` iteration produces a whole big frame: one slow step on the last 8 samples
(4 conditioning vectors), then 4 mid steps on the last 2 samples each (2 vectors each), then 8
sample-tier steps, each drawing the next sample. The weights' effective kernels are computed once
before the loop. The original instead called three Keras models from Python for every sample.
"""
import math

import numpy as np

from .model import gru_step, matmul, scale_levels
from .quantize import Q_ZERO, dequantize, soundsc
from .quiet import import_tensorflow

tf = import_tensorflow()


PICK_BLOCK = 16  # levels per block of the two-level inverse CDF


def _batch(t):
    """The batch size: static when traced with a known shape (XLA wants it), else dynamic."""
    return t.shape[0] if t.shape[0] is not None else tf.shape(t)[0]


def inverse_cdf_pick(p, u):
    """Index k with cdf[k-1] <= u * total < cdf[k], for p (batch, q) >= 0 and u (batch,) in [0, 1).

    Two levels, a block of 16 levels and then a level inside it: two cumulative sums of 16
    instead of one of 256, which XLA's CPU backend computes as a quadratic reduce-window.
    """
    B, q = _batch(p), p.shape[-1]
    n_blocks = -(-q // PICK_BLOCK)
    p = tf.pad(p, [[0, 0], [0, n_blocks * PICK_BLOCK - q]])  # zero-probability padding
    blocks = tf.reshape(p, [B, n_blocks, PICK_BLOCK])
    block_sums = tf.reduce_sum(blocks, axis=-1)
    block_cdf = tf.cumsum(block_sums, axis=-1)
    target = u * block_cdf[:, -1]
    b = tf.minimum(tf.reduce_sum(tf.cast(block_cdf <= target[:, None], tf.int32), axis=-1), n_blocks - 1)
    inner = tf.cumsum(tf.gather(blocks, b, batch_dims=1), axis=-1)
    # what is left of the target inside block b; kept below the block's own total so that float
    # rounding can never carry the pick onto a zero-probability level at the block's end
    rest = tf.minimum(target - (tf.gather(block_cdf, b, batch_dims=1) - tf.gather(block_sums, b, batch_dims=1)),
                      inner[:, -1] * (1.0 - 1e-6))
    j = tf.reduce_sum(tf.cast(inner <= rest[:, None], tf.int32), axis=-1)
    return tf.minimum(b * PICK_BLOCK + j, q - 1)


PRIME_CHUNK = 8192  # primer samples per pass of the conditioning tiers (bounds memory for long primers)


class Sampler:
    def __init__(self, model, xla=True):
        # XLA fuses the ~100 small ops of a big frame into one program; measured on 2 cores it
        # wins at every size, from dim 32 (5x) to dim 1024 (1.1-1.2x, 1 and 16 streams).
        self.model, self.xla = model, xla
        self._run = tf.function(self._loop, jit_compile=self.xla)
        self._condition = tf.function(lambda x, hs, hm, reset: model.conditioning(x, hs, hm, reset)[1:])

    def prime(self, levels, n_seqs):
        """Run the model over a primer (1-D int levels) and return the `start` to continue from.

        The primer is left-padded with Q_ZERO to a whole number of big frames, so generation goes
        on at a frame boundary, exactly as if the model had generated the primer itself. It is fed
        as training data is (8 samples of Q_ZERO, then the primer), in chunks with the states
        carried, through the slow and mid tiers only: their states are all that carries over.
        """
        bf = self.model.cfg.big_frame
        levels = np.asarray(levels, np.int32)
        if levels.size == 0:
            return self.initial(n_seqs)
        padded = np.concatenate([np.full((-len(levels)) % bf, Q_ZERO, np.int32), levels])
        x = np.tile(np.concatenate([np.full(bf, Q_ZERO, np.int32), padded])[None], (n_seqs, 1))
        h_slow, h_mid = self.model.zero_states(n_seqs)
        for i in range(0, len(padded), PRIME_CHUNK):
            h_slow, h_mid = self._condition(x[:, i:i + PRIME_CHUNK + bf], h_slow, h_mid,
                                            tf.constant(float(i == 0)))
        return h_slow, h_mid, tf.constant(x[:, -bf:])

    def initial(self, n_seqs):
        """States and context a generation starts from: the learned h0s and 8 samples of Q_ZERO."""
        m = self.model
        h_slow = tf.broadcast_to(m.slow_gru.h0, (n_seqs, m.cfg.slowdim))
        h_mid = tf.broadcast_to(m.mid_gru.h0, (n_seqs, m.cfg.dim))
        return h_slow, h_mid, tf.fill((n_seqs, m.cfg.big_frame), Q_ZERO)

    def generate(self, n_seqs, n_samples, temperature=1.0, seed=0, argmax=False, start=None):
        """Draw `n_samples` levels for each of `n_seqs` sequences.

        temperature: a number or one per sequence (divides the logits). seed: the draws are a
        pure function of (seed, step), so the same seed gives the same audio. argmax: take the most
        likely level instead of drawing (the original's --debug 1). start: (h_slow, h_mid, frame)
        to continue from instead of `initial()`.
        Returns (levels (n_seqs, n_samples) int32, log-probabilities of the chosen levels under
        the tempered distribution (n_seqs, n_samples) float32).
        """
        bf = self.model.cfg.big_frame
        temps = np.broadcast_to(np.asarray(temperature, np.float32), (n_seqs,)).copy()
        h_slow, h_mid, frame = start if start is not None else self.initial(n_seqs)
        n_frames = max(1, math.ceil(n_samples / bf))
        levels, logp = self._run(n_frames, bool(argmax), tf.constant(temps), tf.constant(int(seed), tf.int32),
                                 h_slow, h_mid, tf.cast(frame, tf.int32))
        return levels.numpy()[:, :n_samples], logp.numpy()[:, :n_samples]

    def _loop(self, n_frames, argmax, temps, seed, h_slow, h_mid, frame):
        m = self.model
        c, k = m.cfg, m.kernels()
        bf, fr, D, q = c.big_frame, c.frame, c.dim, c.q_levels
        B = _batch(frame)
        s_wx, s_bx, s_wh, s_bh = k["slow"]
        m_wx, m_bx, m_wh, m_bh = k["mid"]
        (so_w, so_b), (mi_w, mi_b), (mo_w, mo_b), (w1, b1) = k["slow_out"], k["mid_in"], k["mid_out"], k["h1"]
        # One generated sample of a big model reads tens of MB of weights, so generation is
        # memory-bound; linear layers that follow each other are fused here, once, to read fewer
        # bytes per sample (the same maths as the training graph, up to float rounding):
        # - the mid GRU's input kernel is applied to the slow tier's 4 vectors in one matmul per
        #   big frame, and folded into the mid tier's own small input layer;
        mi_wx, mi_bx = tf.matmul(mi_w, m_wx), tf.linalg.matvec(m_wx, mi_b, transpose_a=True) + m_bx
        # - the mid tier's output layer and the sample tier's first hidden layer become one
        #   (dim, frame*dim) matrix, and the embedding tables go through that hidden layer too.
        mo_w1 = tf.concat([tf.matmul(mo_w[:, j * D:(j + 1) * D], w1) for j in range(fr)], axis=1)
        mo_b1 = tf.concat([tf.linalg.matvec(w1, mo_b[j * D:(j + 1) * D], transpose_a=True) + b1
                           for j in range(fr)], axis=0)
        tables_w1 = [tf.matmul(t, w1) for t in k["tables"]]
        (w2, b2), (wo, bo) = k["h2"], k["out"]

        def draw(logits, u):
            """Next level from softmax(logits / T): argmax, or inverse-CDF with one uniform per
            stream (Gumbel-max would need q_levels random numbers per draw, and drawing them was
            most of the time of a small model)."""
            logp = tf.nn.log_softmax(logits / temps[:, None])
            if argmax:
                nxt = tf.argmax(logp, axis=-1, output_type=tf.int32)
            else:
                nxt = inverse_cdf_pick(tf.exp(logp), u)
            return nxt, tf.gather(logp, nxt, batch_dims=1)

        def body(i, frame, h_slow, h_mid, levels_ta, logp_ta):
            h_slow = gru_step(matmul(scale_levels(frame, q), s_wx) + s_bx, h_slow, s_wh, s_bh)
            slow_cond = tf.reshape(matmul(h_slow, so_w) + so_b, [B * c.mids_per_slow, D])
            slow_xp = tf.reshape(tf.matmul(slow_cond, m_wx), [B, c.mids_per_slow, 3 * D])
            history = tf.unstack(frame, num=bf, axis=1)  # the previous big frame, oldest first
            # this frame's uniforms, a pure function of (seed, frame index): same seed, same audio
            uniforms = tf.random.stateless_uniform([bf, B], seed=tf.stack([seed, i]))
            new, logps = [], []
            for j in range(c.mids_per_slow):
                ctx = (history + new)[-fr:]
                xp = matmul(scale_levels(tf.stack(ctx, 1), q), mi_wx) + mi_bx + slow_xp[:, j]
                h_mid = gru_step(xp, h_mid, m_wh, m_bh)
                h1_mid = tf.reshape(matmul(h_mid, mo_w1) + mo_b1, [B, fr, D])  # mid vectors, through h1
                for s in range(fr):
                    h = h1_mid[:, s]
                    for table, p in zip(tables_w1, (history + new)[-fr:]):
                        h = h + tf.gather(table, p)
                    h = tf.nn.relu(matmul(tf.nn.relu(h), w2) + b2)
                    nxt, lp = draw(matmul(h, wo) + bo, uniforms[len(new)])
                    new.append(nxt)
                    logps.append(lp)
            frame = tf.stack(new, axis=1)
            return (i + 1, frame, h_slow, h_mid, levels_ta.write(i, frame),
                    logp_ta.write(i, tf.stack(logps, axis=1)))

        loop_vars = (tf.constant(0), frame, h_slow, h_mid,
                     tf.TensorArray(tf.int32, size=n_frames), tf.TensorArray(tf.float32, size=n_frames))
        _, _, _, _, levels_ta, logp_ta = tf.while_loop(lambda i, *_: i < n_frames, body, loop_vars)
        # (n_frames, B, bf) -> (B, n_frames * bf)
        levels = tf.reshape(tf.transpose(levels_ta.stack(), [1, 0, 2]), [B, n_frames * bf])
        logp = tf.reshape(tf.transpose(logp_ta.stack(), [1, 0, 2]), [B, n_frames * bf])
        return levels, logp


def to_audio(levels, qtype, q_levels):
    """Levels -> float audio scaled into [-0.475, 0.475] as the original wrote it."""
    return soundsc(dequantize(levels, qtype, q_levels))
