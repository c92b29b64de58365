"""Quantisation of audio to integer levels and back; the only place that knows the levels.

Linear follows the SampleRNN reference: each file is min-max normalised to [0, 1] on its own and
cut into `q_levels` equal bins. Mu-law and A-law (the reference's other two) compand first
(peak-normalised, so silence stays at the middle level) and then bin the same way. The middle
level, `q_zero(q_levels)`, stands for silence (`Q_ZERO` for the default 256 levels).
"""
import numpy as np

Q_LEVELS = 256
QTYPES = ("linear", "mu-law", "a-law")
A_LAW = 87.6  # the A of ITU-T G.711
AUDIO_PEAK = 0.475  # written audio lies in [-AUDIO_PEAK, AUDIO_PEAK], the original's range (scale_audio)


def q_zero(q_levels=Q_LEVELS):
    """The middle level: silence, the zero prefix of every batch and the start of generation."""
    return q_levels // 2


Q_ZERO = q_zero(Q_LEVELS)

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
        return np.full(x.shape, q_zero(q_levels), np.int32)
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
        return np.full(x.shape, q_zero(q_levels), np.int32)
    y = x / peak
    mu = q_levels - 1
    f = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
    return _bin((f + 1.0) / 2.0, q_levels)


def mu_law_dequantize(q, q_levels=Q_LEVELS):
    """Levels -> float in [-1, 1], the inverse of the companding at each bin centre."""
    f = _unbin(q, q_levels)
    mu = q_levels - 1
    return (np.sign(f) * np.expm1(np.abs(f) * np.log1p(mu)) / mu).astype(np.float32)


def a_law_quantize(x, q_levels=Q_LEVELS):
    """Peak-normalise `x` to [-1, 1], compand with A-law (A = 87.6), quantise the result."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return np.zeros(x.shape, np.int32)
    if not x.max() > x.min():
        return np.full(x.shape, q_zero(q_levels), np.int32)
    a = np.abs(x / np.abs(x).max())
    small = a < 1.0 / A_LAW
    f = np.where(small, A_LAW * a, 1.0 + np.log(np.maximum(A_LAW * a, 1.0))) / (1.0 + np.log(A_LAW))
    return _bin((np.sign(x) * f + 1.0) / 2.0, q_levels)


def a_law_dequantize(q, q_levels=Q_LEVELS):
    """Levels -> float in [-1, 1], the inverse of the A-law companding at each bin centre."""
    f = _unbin(q, q_levels)
    a, k = np.abs(f), 1.0 + np.log(A_LAW)
    y = np.where(a < 1.0 / k, a * k / A_LAW, np.exp(a * k - 1.0) / A_LAW)
    return (np.sign(f) * y).astype(np.float32)


_CODECS = {"linear": (linear_quantize, linear_dequantize), "mu-law": (mu_law_quantize, mu_law_dequantize),
           "a-law": (a_law_quantize, a_law_dequantize)}


def check_qtype(qtype):
    if qtype not in QTYPES:
        raise ValueError(f"unknown quantisation {qtype!r}; expected one of {', '.join(QTYPES)}")


def quantize(x, qtype="linear", q_levels=Q_LEVELS):
    check_qtype(qtype)
    return _CODECS[qtype][0](x, q_levels)


def dequantize(q, qtype="linear", q_levels=Q_LEVELS):
    check_qtype(qtype)
    return _CODECS[qtype][1](q, q_levels)


# How written audio is scaled (--scaling): `peak` (the default) keeps silence at zero and puts the
# largest magnitude at +-AUDIO_PEAK; `fixed` keeps silence at zero and the levels' own scale, the
# extreme levels at +-AUDIO_PEAK (what a stream can do: it cannot know its peak in advance; for a clip
# that reaches an extreme level it is `peak`, for a quieter one quieter by the same factor throughout);
# `minmax` is the original's soundsc, whose min-max scaling moves zero whenever the generated range is
# lopsided (silences at +0.04 and a click at each end: the outputs of srnn before it had --scaling,
# and of the original, were scaled so).
SCALINGS = ("peak", "fixed", "minmax")


def scale_audio(x, scaling="peak", zero=0.0, lo=None, hi=None, peak=AUDIO_PEAK):
    """Dequantised audio `x` (in [-1, 1]) as it is written. peak: `zero` (the silent level's value)
    at 0 and the largest magnitude at +-peak (silence -> zeros); fixed: `zero` at 0, times `peak`;
    minmax: soundsc. `lo`/`hi`: the whole signal's range, when `x` is one block of it."""
    if scaling == "minmax":
        return soundsc(x, peak, lo, hi)
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; expected one of {', '.join(SCALINGS)}")
    x = np.asarray(x, np.float64) - zero
    if scaling == "fixed":
        return (x * peak).astype(np.float32)
    if x.size == 0:
        return x.astype(np.float32)
    lo = x.min() if lo is None else lo - zero
    hi = x.max() if hi is None else hi - zero
    top = max(abs(lo), abs(hi))
    if not top > 0:
        return np.zeros(x.shape, np.float32)
    return (x * (peak / top)).astype(np.float32)


def to_audio(levels, qtype, q_levels, lo=None, hi=None, scaling="peak"):
    """Levels -> float audio in [-AUDIO_PEAK, AUDIO_PEAK] as it is written (scale_audio: silence at
    zero by default, or the original's min-max). `lo`, `hi`: the whole sequence's lowest and
    highest levels, when `levels` is one block of it (fixed needs neither)."""
    bounds = {} if lo is None else dict(zip(("lo", "hi"), dequantize(np.array([lo, hi]), qtype, q_levels)))
    zero = float(dequantize(np.array([q_zero(q_levels)]), qtype, q_levels)[0])
    return scale_audio(dequantize(levels, qtype, q_levels), scaling, zero, **bounds)


def pcm16(x):
    """Float audio in [-1, 1] -> 16-bit PCM, as libsndfile writes a WAV's samples (floor(x * 32768),
    clipped), so that a streamed sample and a file's are the same bytes."""
    return np.clip(np.floor(np.asarray(x, np.float32) * np.float32(32768)), -32768, 32767).astype("<i2")


def soundsc(x, peak=AUDIO_PEAK, lo=None, hi=None):
    """Min-max scale into [-peak, peak] for writing, as the original did; constant -> zeros.
    `lo`/`hi`: the whole signal's range, when `x` is one block of it."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    lo = x.min() if lo is None else lo
    hi = x.max() if hi is None else hi
    if not hi > lo:
        return np.zeros(x.shape, np.float32)
    return ((x - lo) / (hi - lo) * 2.0 * peak - peak).astype(np.float32)
