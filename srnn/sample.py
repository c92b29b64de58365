"""Generation: the autoregressive loop, compiled, for many sequences at once.

One `tf.while_loop` iteration produces a whole big frame: one slow step on the last 8 samples
(4 conditioning vectors), then 4 mid steps on the last 2 samples each (2 vectors each), then 8
sample-tier steps, each drawing the next sample. The weights' effective kernels are computed once
before the loop. The original instead called three Keras models from Python for every sample.
"""
import math

import numpy as np

from .model import SampleRNN, gru_step, matmul, scale_levels
from .quantize import Q_ZERO, dequantize, soundsc
from .quiet import import_tensorflow

tf = import_tensorflow()


def use_xla(cfg):
    """XLA fuses the ~100 small ops of a big frame into one program; it pays while the per-op
    overhead dominates (small models), not once matrix-vector products do."""
    return max(cfg.dim, cfg.slowdim) <= 512


class Sampler:
    def __init__(self, model, xla=None):
        self.model = model
        self.xla = use_xla(model.cfg) if xla is None else xla
        self._run = tf.function(self._loop, jit_compile=self.xla)

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
        B = tf.shape(frame)[0]
        s_wx, s_bx, s_wh, s_bh = k["slow"]
        m_wx, m_bx, m_wh, m_bh = k["mid"]

        def draw(logits, step):
            logits = logits / temps[:, None]
            if argmax:
                nxt = tf.argmax(logits, axis=-1, output_type=tf.int32)
            else:  # Gumbel-max: a stateless draw from softmax(logits), reproducible from (seed, step)
                u = tf.random.stateless_uniform(tf.shape(logits), seed=tf.stack([seed, step]),
                                                minval=1e-12, maxval=1.0)
                nxt = tf.argmax(logits - tf.math.log(-tf.math.log(u)), axis=-1, output_type=tf.int32)
            return nxt, tf.gather(tf.nn.log_softmax(logits), nxt, batch_dims=1)

        def body(i, frame, h_slow, h_mid, levels_ta, logp_ta):
            h_slow = gru_step(matmul(scale_levels(frame, q), s_wx) + s_bx, h_slow, s_wh, s_bh)
            slow_cond = tf.reshape(matmul(h_slow, k["slow_out"][0]) + k["slow_out"][1], [B, c.mids_per_slow, D])
            history = tf.unstack(frame, num=bf, axis=1)  # the previous big frame, oldest first
            new, logps = [], []
            for j in range(c.mids_per_slow):
                ctx = (history + new)[-fr:]
                mid_x = matmul(scale_levels(tf.stack(ctx, 1), q), k["mid_in"][0]) + k["mid_in"][1] + slow_cond[:, j]
                h_mid = gru_step(matmul(mid_x, m_wx) + m_bx, h_mid, m_wh, m_bh)
                mid_cond = tf.reshape(matmul(h_mid, k["mid_out"][0]) + k["mid_out"][1], [B, fr, D])
                for s in range(fr):
                    logits = SampleRNN.sample_logits(k, (history + new)[-fr:], mid_cond[:, s])
                    nxt, lp = draw(logits, i * bf + len(new))
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
