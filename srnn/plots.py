"""Pictures for people: costs.png (training curves) and generated.png (waveform + spectrogram)."""
import numpy as np

from .atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, plt):
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_costs(path, train_bits, valid_bits, best_epoch=None):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(len(train_bits))
    ax.plot(epochs, train_bits, "o-", label="training")
    ax.plot(epochs[:len(valid_bits)], valid_bits, "s-", label="validation")
    if best_epoch is not None:
        ax.plot([best_epoch], [valid_bits[best_epoch]], "*", color="crimson", markersize=16,
                label=f"best (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (bits per sample)")
    ax.set_title("SampleRNN costs")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path, plt)


def plot_audio(path, x, sample_rate, title, primer_s=None):
    """Waveform over a spectrogram; a dashed line marks where a primer ends."""
    plt = _pyplot()
    fig, (wave, spec) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    t = np.arange(len(x)) / sample_rate
    wave.plot(t, x, linewidth=0.4)
    wave.set_ylabel("amplitude")
    wave.set_title(title)
    with np.errstate(divide="ignore"):  # digital silence has a spectrum of exact zeros
        spec.specgram(x, NFFT=512, Fs=sample_rate, noverlap=384, cmap="magma")
    spec.set_xlabel("time (s)")
    spec.set_ylabel("frequency (Hz)")
    if primer_s:
        for ax in (wave, spec):
            ax.axvline(primer_s, color="cyan", linestyle="--", linewidth=1)
    wave.set_xlim(0, len(x) / sample_rate)
    _save(fig, path, plt)
