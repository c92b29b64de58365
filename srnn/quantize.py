"""Quantisation of audio to integer levels and back; the only place that knows the levels.

Linear follows the SampleRNN reference: each file is min-max normalised to [0, 1] on its own and
cut into `Q_LEVELS` equal bins. Mu-law compands first (peak-normalised, so silence stays at the
middle level) and then bins the same way. `Q_ZERO` is the middle level and stands for silence.
"""
import numpy as np

Q_LEVELS = 256
Q_ZERO = Q_LEVELS // 2
QTYPES = ("linear", "mu-law")

# The reference's guard that keeps the top value (1.0) inside the last bin.
_EPS = 1e-5


def _bin(u, q_levels):
    """[0, 1] -> integer levels 0..q_levels-1 (equal-width bins)."""
    q = np.floor(u * (q_levels - _EPS) + _EPS / 2)
    return np.clip(q, 0, q_levels - 1).astype(np.int32)


def _unbin(q, q_levels):
    """Levels -> bin centres in [-1, 1]."""
    return (np.asarray(q, np.float64) + 0.5) / q_levels * 2.0 - 1.0


def linear_quantize(x, q_levels=Q_LEVELS):
    """Min-max normalise `x` to [0, 1] and quantise linearly; a constant input is all Q_ZERO."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return np.zeros(x.shape, np.int32)
    lo, hi = x.min(), x.max()
    if not hi > lo:  # silent/constant file: no range to normalise, call it silence
        return np.full(x.shape, q_levels // 2, np.int32)
    return _bin((x - lo) / (hi - lo), q_levels)


def linear_dequantize(q, q_levels=Q_LEVELS):
    """Levels -> float in [-1, 1] (bin centres)."""
    return _unbin(q, q_levels).astype(np.float32)


def mu_law_quantize(x, q_levels=Q_LEVELS):
    """Peak-normalise `x` to [-1, 1], compand with mu = q_levels - 1, quantise the result."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return np.zeros(x.shape, np.int32)
    peak = np.abs(x).max()
    if not x.max() > x.min():  # constant (DC or zero) file: silence, as for linear
        return np.full(x.shape, q_levels // 2, np.int32)
    y = x / peak
    mu = q_levels - 1
    f = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
    return _bin((f + 1.0) / 2.0, q_levels)


def mu_law_dequantize(q, q_levels=Q_LEVELS):
    """Levels -> float in [-1, 1], the inverse of the companding at each bin centre."""
    f = _unbin(q, q_levels)
    mu = q_levels - 1
    return (np.sign(f) * np.expm1(np.abs(f) * np.log1p(mu)) / mu).astype(np.float32)


def check_qtype(qtype):
    if qtype not in QTYPES:
        raise ValueError(f"unknown quantisation {qtype!r}; expected one of {', '.join(QTYPES)}")


def quantize(x, qtype="linear", q_levels=Q_LEVELS):
    check_qtype(qtype)
    return (linear_quantize if qtype == "linear" else mu_law_quantize)(x, q_levels)


def dequantize(q, qtype="linear", q_levels=Q_LEVELS):
    check_qtype(qtype)
    return (linear_dequantize if qtype == "linear" else mu_law_dequantize)(q, q_levels)


def soundsc(x, peak=0.475):
    """Min-max scale into [-peak, peak] for writing, as the original did; constant -> zeros."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    lo, hi = x.min(), x.max()
    if not hi > lo:
        return np.zeros(x.shape, np.float32)
    return ((x - lo) / (hi - lo) * 2.0 * peak - peak).astype(np.float32)
