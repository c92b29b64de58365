import numpy as np
import pytest

from srnn.quantize import (Q_LEVELS, Q_ZERO, QTYPES, a_law_dequantize, a_law_quantize, dequantize,
                           linear_dequantize, linear_quantize, mu_law_dequantize, mu_law_quantize, q_zero,
                           quantize, soundsc)


def test_levels_and_q_zero():
    assert Q_LEVELS == 256 and Q_ZERO == 128


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("q_levels", [256, 64, 1024])
def test_range_uses_all_levels(qtype, q_levels, rng):
    x = rng.uniform(-1, 1, 100_000)
    q = quantize(x, qtype, q_levels)
    assert q.dtype == np.int32
    assert q.min() == 0 and q.max() == q_levels - 1
    assert np.all(np.diff(dequantize(np.arange(q_levels), qtype, q_levels)) > 0)
    if qtype != "linear":  # companded: silence is the middle level (linear bins the file's own range)
        assert quantize(np.array([0.0, 1.0, -1.0]), qtype, q_levels)[0] == q_zero(q_levels)


def test_linear_extremes_map_to_first_and_last_level():
    q = linear_quantize(np.array([-3.0, 0.0, 5.0]))
    assert q[0] == 0 and q[2] == 255


def test_linear_round_trip_error_bound(rng):
    x = rng.uniform(-0.3, 0.7, 50_000)
    u = (x - x.min()) / (x.max() - x.min()) * 2 - 1  # the file's own range, mapped to [-1, 1]
    err = np.abs(linear_dequantize(linear_quantize(x)) - u)
    step = 2.0 / Q_LEVELS
    assert err.max() <= step / 2 + 1e-6  # at most half a bin
    assert err.max() > step / 4  # and the bins really are that coarse


def test_mu_law_round_trip_and_fine_resolution_near_zero(rng):
    x = rng.uniform(-1, 1, 50_000)
    x[0] = 1.0  # peak 1: no rescaling, so the round trip can be compared directly
    y = mu_law_dequantize(mu_law_quantize(x))
    mu = Q_LEVELS - 1
    # half a bin (1/L) in the companded domain, times the expansion's slope at the steeper end
    slope = np.log1p(mu) / mu * (1 + mu * np.maximum(np.abs(x), np.abs(y)))
    assert np.all(np.abs(y - x) <= slope * (1.0 / Q_LEVELS) + 1e-6)
    quiet = np.abs(x) < 0.01
    assert np.abs(y - x)[quiet].max() < 0.2 * (1.0 / Q_LEVELS)  # far finer than linear's half bin


def test_a_law_follows_g711_and_round_trips(rng):
    """A-law with A = 87.6: linear below 1/A (slope A / (1 + ln A) ~ 16), logarithmic above; the
    round trip is within half a bin of the companded domain, times the expansion's slope."""
    x = rng.uniform(-1, 1, 50_000)
    x[0] = 1.0
    y = a_law_dequantize(a_law_quantize(x))
    k = 1 + np.log(87.6)
    slope = np.where(np.abs(x) < 1 / 87.6, k / 87.6, k * np.maximum(np.abs(x), np.abs(y)))
    assert np.all(np.abs(y - x) <= slope * (1.0 / Q_LEVELS) + 1e-6)
    # the compressor: 1/A maps to 1/(1 + ln A) of the range, i.e. level 128 + 128/k
    assert a_law_quantize(np.array([1.0, 1 / 87.6 + 1e-9]))[1] == int(128 + 128 / k)
    assert not np.array_equal(a_law_quantize(x), mu_law_quantize(x))


def test_mu_law_silence_is_q_zero():
    x = np.array([0.0, 0.5, -0.5, 0.0])
    q = mu_law_quantize(x)
    assert q[0] == Q_ZERO and q[3] == Q_ZERO


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("value", [0.0, 0.3, -1.0])
def test_constant_input_is_silence_without_nan(qtype, value):
    q = quantize(np.full(1000, value), qtype)
    assert np.all(q == Q_ZERO)
    assert np.all(np.isfinite(dequantize(q, qtype)))


def test_dequantize_is_monotonic_and_bounded():
    for deq in (linear_dequantize, mu_law_dequantize, a_law_dequantize):
        v = deq(np.arange(Q_LEVELS))
        assert np.all(np.diff(v) > 0)
        assert v.min() >= -1 and v.max() <= 1


def test_soundsc_scales_into_original_range():
    y = soundsc(np.array([3.0, 5.0, 4.0]))
    assert y.min() == pytest.approx(-0.475) and y.max() == pytest.approx(0.475)
    assert y[2] == pytest.approx(0.0)
    assert np.all(soundsc(np.ones(10)) == 0)


def test_written_audio_keeps_silence_at_zero_and_minmax_is_the_originals():
    """The default scaling puts the silent level at exactly 0 and the largest magnitude
    at 0.475, whatever the range's lopsidedness; `minmax` gives soundsc's values exactly."""
    from srnn.quantize import q_zero, scale_audio
    from srnn.quantize import to_audio

    for qtype in ("linear", "mu-law", "a-law"):
        levels = np.array([q_zero(256)] * 5 + [200, 250, 140, q_zero(256)])  # lopsided: all above silence
        y = to_audio(levels, qtype, 256)
        assert np.all(y[:5] == 0) and y[-1] == 0 and y.max() == pytest.approx(0.475) and y.min() == 0
        old = to_audio(levels, qtype, 256, scaling="minmax")
        np.testing.assert_array_equal(old, soundsc(dequantize(levels, qtype, 256)))
        assert old[0] == pytest.approx(-0.475)  # the original's: silence pushed to the bottom
        # one block of a long sequence, scaled by the whole sequence's range: the same values
        np.testing.assert_allclose(to_audio(levels[5:7], qtype, 256, lo=levels.min(), hi=levels.max()), y[5:7],
                                   rtol=1e-6)
    assert np.all(scale_audio(np.zeros(4)) == 0)
    np.testing.assert_allclose(scale_audio(np.array([-0.5, 0.25, 0.0])), [-0.475, 0.2375, 0.0])
    with pytest.raises(ValueError, match="peak, fixed, minmax"):
        scale_audio(np.zeros(2), "loud")


def test_unknown_qtype_rejected():
    with pytest.raises(ValueError, match="mu-law"):
        quantize(np.zeros(3), "log")


def test_scaling_flag_of_sample(tmp_path):
    """--sample writes silence at zero by default, and the original's min-max values with
    --scaling minmax: two affine images of the same generated audio."""
    import soundfile as sf

    from conftest import run_tool
    from srnn import checkpoint
    from srnn.config import ModelConfig
    from srnn.model import SampleRNN

    checkpoint.save(str(tmp_path / "m.h5"), SampleRNN(ModelConfig(slowdim=16, dim=16)))
    waves = {}
    for scaling in ("peak", "minmax"):
        proc = run_tool("train_srnn.py", "--sample", "m.h5", "--seconds", "0.1", "--scaling", scaling, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        waves[scaling] = sf.read(tmp_path / "generated.wav")[0]
    peak, minmax = waves["peak"], waves["minmax"]
    assert np.abs(peak).max() == pytest.approx(0.475, abs=1e-4)
    assert minmax.min() == pytest.approx(-0.475, abs=1e-4) and minmax.max() == pytest.approx(0.475, abs=1e-4)
    slope, offset = np.polyfit(minmax, peak, 1)
    assert np.abs(slope * minmax + offset - peak).max() < 1e-4  # the same audio, up to 16-bit rounding
    assert not np.allclose(peak, minmax, atol=1e-3)
