"""The recurrent maths of the frame tiers: one step, and a whole sequence with its gradient written
by hand, for the GRU and the LSTM.

A cell's state is one tensor: h for the GRU, h and c side by side for the LSTM, so the model, the
training loop and the checkpoint carry one array per RNN layer whatever the cell.

Both sequence functions take the input already projected (xp = x @ wx + bx for every step, one big
GEMM outside the loop) and write their gradient by hand: autodiff of the scan adds each step's
outer product into the (units, gates*units) recurrent-weight gradient inside the loop, which at
dim 1024 moves 12 MB per step and made the GRU's backward pass 9x its forward. Here the reverse
scan carries only the state gradients and emits each step's gate gradients; dW_h is then one
(time*batch)-row GEMM after the loop.

Written once in keras.ops for every backend; the scan is the engine's (tf.scan's semantics), and
the custom gradient Keras' (`ops.custom_gradient`: TensorFlow hands the gradient function one
argument per output, possibly None; JAX one structure of them, zeros where unused: `_upstream`).
"""
import collections

from . import engine
from .config import RNN_BLOCKS
from .packed import matmul

E = engine.module()
from keras import ops  # noqa: E402  (after the engine has loaded its framework quietly)


def _prev_states(s0, ss):
    """(time, batch, width) states entering each step: s0, then every step's output but the last."""
    return ops.concatenate([s0[None], ss[:-1]], axis=0)


def _upstream(grads, like):
    """The gradient function's arguments as (d_outputs, d_last_state), whatever the backend: zeros
    shaped like `like` where an output got no gradient."""
    if len(grads) == 1:  # JAX: one structure
        grads = grads[0]
    return tuple(ops.zeros_like(x) if g is None else g for g, x in zip(grads, like))


# ---- GRU

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
    hp = matmul(h, wh) + bh  # wh may be a sampler's packed weight
    xz, xr, xc = ops.split(xp, 3, axis=-1)
    hz, hr, hc = ops.split(hp, 3, axis=-1)
    z = ops.sigmoid(xz + hz)
    r = ops.sigmoid(xr + hr)
    c = ops.tanh(xc + r * hc)
    return z * h + (1.0 - z) * c, z, r, c, hc


def gru_sequence(xp, h, wh, bh):
    """Run the GRU over time. xp (batch, time, 3*units) already projected; returns
    (outputs (batch, time, units), last state (batch, units))."""
    # Variables are read here, outside the custom-gradient function, which takes tensors only.
    return _gru_sequence(*(E.tensor(a) for a in (xp, h, wh, bh)))


@ops.custom_gradient
def _gru_sequence(xp, h, wh, bh):
    zeros = ops.zeros_like(h)

    hs, zs, rs, cs, hcs = E.scan(lambda carry, xt: _gru_parts(xt, carry[0], wh, bh),
                                 ops.transpose(xp, [1, 0, 2]), initializer=(h, zeros, zeros, zeros, zeros))
    outputs = ops.transpose(hs, [1, 0, 2])

    def grad(*upstream):
        units = h.shape[-1]
        d_outs, d_last = _upstream(upstream, (outputs, h))
        h_prevs = _prev_states(h, hs)
        wh_t = ops.transpose(wh)

        def back(carry, inputs):
            d_out, h_prev, z, r, c, hc = inputs
            dh = carry[0] + d_out
            daz = dh * (h_prev - c) * z * (1.0 - z)
            dac = dh * (1.0 - z) * (1.0 - c * c)
            dar = dac * hc * r * (1.0 - r)
            dhp = ops.concatenate([daz, dar, dac * r], axis=-1)
            return dh * z + ops.matmul(dhp, wh_t), ops.concatenate([daz, dar, dac], axis=-1), dhp

        init = (d_last, ops.zeros_like(xp[:, 0]), ops.zeros_like(xp[:, 0]))
        dhs, dxps, dhps = E.scan(back, (ops.transpose(d_outs, [1, 0, 2]), h_prevs, zs, rs, cs, hcs),
                                 initializer=init, reverse=True)
        flat_dhp = ops.reshape(dhps, [-1, 3 * units])
        d_wh = ops.matmul(ops.transpose(ops.reshape(h_prevs, [-1, units])), flat_dhp)
        return ops.transpose(dxps, [1, 0, 2]), dhs[0], d_wh, ops.sum(flat_dhp, axis=0)

    return (outputs, hs[-1]), grad


# ---- LSTM

def lstm_step(xp, s, wh, bh):
    """One LSTM step. xp (batch, 4*units) precomputed, gates in Keras' order i, f, g, o;
    s = [h, c] (batch, 2*units). Returns the new [h, c]."""
    return _lstm_parts(xp, s, wh, bh)[0]


def _lstm_parts(xp, s, wh, bh):
    """The new state and what its gradient needs: (s_new, i, f, g, o, tanh(c_new))."""
    h, c = ops.split(s, 2, axis=-1)
    ai, af, ag, ao = ops.split(xp + (matmul(h, wh) + bh), 4, axis=-1)
    i, f, g, o = ops.sigmoid(ai), ops.sigmoid(af), ops.tanh(ag), ops.sigmoid(ao)
    c_new = f * c + i * g
    tc = ops.tanh(c_new)
    return ops.concatenate([o * tc, c_new], axis=-1), i, f, g, o, tc


def lstm_sequence(xp, s, wh, bh):
    """Run the LSTM over time. xp (batch, time, 4*units); s = [h, c] (batch, 2*units).
    Returns (outputs h (batch, time, units), last state [h, c] (batch, 2*units))."""
    return _lstm_sequence(*(E.tensor(a) for a in (xp, s, wh, bh)))


@ops.custom_gradient
def _lstm_sequence(xp, s, wh, bh):
    units = wh.shape[0]
    gate = ops.zeros_like(s[:, :units])
    ss, i_s, fs, gs, os_, tcs = E.scan(lambda carry, xt: _lstm_parts(xt, carry[0], wh, bh),
                                       ops.transpose(xp, [1, 0, 2]),
                                       initializer=(s, gate, gate, gate, gate, gate))
    hs = ss[..., :units]
    outputs = ops.transpose(hs, [1, 0, 2])

    def grad(*upstream):
        d_outs, d_last = _upstream(upstream, (outputs, s))
        d_outs = ops.transpose(d_outs, [1, 0, 2])
        s_prevs = _prev_states(s, ss)
        h_prevs, c_prevs = ops.split(s_prevs, 2, axis=-1)
        wh_t = ops.transpose(wh)

        def back(carry, inputs):
            dh_next, dc_next, _ = carry
            d_out, c_prev, i, f, g, o, tc = inputs
            dh = dh_next + d_out
            dc = dc_next + dh * o * (1.0 - tc * tc)
            da = ops.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g),
                                  dh * tc * o * (1.0 - o)], axis=-1)
            return ops.matmul(da, wh_t), dc * f, da

        dh_last, dc_last = ops.split(d_last, 2, axis=-1)
        init = (dh_last, dc_last, ops.zeros_like(xp[:, 0]))
        dhs, dcs, das = E.scan(back, (d_outs, c_prevs, i_s, fs, gs, os_, tcs), initializer=init, reverse=True)
        flat_da = ops.reshape(das, [-1, 4 * units])
        d_wh = ops.matmul(ops.transpose(ops.reshape(h_prevs, [-1, units])), flat_da)
        return (ops.transpose(das, [1, 0, 2]), ops.concatenate([dhs[0], dcs[0]], axis=-1), d_wh,
                ops.sum(flat_da, axis=0))

    return (outputs, ss[-1]), grad


Cell = collections.namedtuple("Cell", "gates states step sequence")
# gates: blocks of `units` in the projected input; states: blocks of `units` in the state
CELLS = {name: Cell(*RNN_BLOCKS[name], step, sequence)
         for name, step, sequence in (("gru", gru_step, gru_sequence), ("lstm", lstm_step, lstm_sequence))}
