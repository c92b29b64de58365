"""Command-line front ends: argument parsing and user-facing messages for both scripts."""
import argparse
import sys

from .config import SAMPLE_RATE
from .errors import SrnnError


def preprocess_parser():
    p = argparse.ArgumentParser(
        prog="preprocess.py",
        description="Cut a folder of audio into consecutive mono parts for training "
        "(DIR_parts/p0.wav, p1.wav, ... and prompts.txt). Reads WAV, FLAC, OGG, AIFF, MP3 and "
        "whatever else soundfile reads, recursively, in sorted order.",
    )
    p.add_argument("dir", metavar="DIR", help="folder with audio files (searched recursively)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each part in seconds (default 8)")
    p.add_argument("--samplerate", type=int, default=SAMPLE_RATE, help="sample rate of the parts in Hz (default 16000)")
    p.add_argument("--out", default=None, help="output folder (default: DIR_parts next to DIR)")
    p.add_argument("--force", action="store_true",
                   help="replace the parts (p*.wav) and prompts.txt already in the output folder; "
                   "other files there are left alone")
    return p


def preprocess_main(argv=None):
    from .parts import describe, make_parts

    args = preprocess_parser().parse_args(argv)
    summary = make_parts(
        args.dir, out_dir=args.out, seconds=args.seconds, samplerate=args.samplerate,
        force=args.force, log=lambda msg: print(msg, file=sys.stderr if msg.startswith("warning") else sys.stdout, flush=True),
    )
    print(describe(summary, args.seconds))
    return 0


# Per-experiment defaults, as the original: `tiny` is its ~50 s demo, `all` Blizzard 2013 (~20 h).
# Any other name reads blizzard/NAME_parts and splits it by fractions: 80 % train, 10 % valid.
EXPERIMENTS = {
    "tiny": dict(nepochs=10, batchsize=2, trainstop=4, validstop=6),
    "all": dict(nepochs=3, batchsize=100, trainstop=8000, validstop=9000),
}
OTHER_EXPERIMENT = dict(nepochs=10, batchsize=2, trainstop=0.8, validstop=0.9)


def _index(text):
    """A split boundary: an int line index, or a float fraction in (0, 1]."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a line index or a fraction, got {text!r}") from None


def train_parser():
    p = argparse.ArgumentParser(
        prog="train_srnn.py",
        description="Train a three-tier SampleRNN on blizzard/EXP_parts (made by preprocess.py), "
        "or generate audio from a checkpoint with --sample.",
    )
    p.add_argument("--exp", default="tiny",
                   help="experiment name: reads ./blizzard/EXP_parts/prompts.txt and names the "
                   "checkpoints EXP_srnn_sz{dim}_e{epoch}.h5. tiny: 10 epochs, batch 2, "
                   "trainstop 4, validstop 6; all: 3 epochs, batch 100, trainstop 8000, validstop "
                   "9000; any other name: 10 epochs, batch 2, trainstop 0.8, validstop 0.9 "
                   "(default tiny)")
    p.add_argument("--sample", metavar="FILE.h5", default=None,
                   help="generate --seconds of audio from this checkpoint into generated.wav instead of "
                   "training (sizes come from the file)")
    p.add_argument("--load", metavar="FILE.h5", default=None,
                   help="continue training from this checkpoint: weights, optimizer state, epoch "
                   "counter and loss history (--nepochs counts all epochs, done ones included)")
    p.add_argument("--slowdim", type=int, default=None, help="slow (3rd) tier GRU size (default 1024, "
                   "or the checkpoint's with --sample/--load)")
    p.add_argument("--dim", type=int, default=None, help="mid tier GRU and sample tier MLP size "
                   "(default 1024, or the checkpoint's with --sample/--load)")
    p.add_argument("--nepochs", type=int, default=None, help="number of epochs to run (default per --exp)")
    p.add_argument("--batchsize", type=int, default=None, help="minibatch size in parts (default per --exp)")
    p.add_argument("--trainstop", type=_index, default=None,
                   help="prompts.txt lines [0, trainstop) are the training set; an int is a line "
                   "index, a float in (0, 1] a fraction (default per --exp)")
    p.add_argument("--validstop", type=_index, default=None,
                   help="lines [trainstop, validstop) are the validation set (default per --exp)")
    p.add_argument("--svepoch", type=int, default=-1,
                   help="also save weights after epochs 0, N, 2N, ... (default -1: only at the end)")
    p.add_argument("--cutlen", type=int, default=256,
                   help="truncated-BPTT length in samples, a multiple of 8 (default 256)")
    p.add_argument("--debug", type=int, default=0,
                   help="1: when sampling, take the most likely sample instead of drawing (default 0)")
    p.add_argument("--samplerate", type=int, default=None,
                   help="sample rate in Hz of the parts and of generated.wav (default 16000, or the "
                   "checkpoint's with --sample)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds of audio to generate (default 4)")
    p.add_argument("--seed", type=int, default=1337,
                   help="seed for initial weights, data order and sampling draws (default 1337)")
    return p


def _positive(args, *flags):
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise SrnnError(f"--{flag}={value} must be positive")


def train_main(argv=None):
    args = train_parser().parse_args(argv)
    _positive(args, "slowdim", "dim", "nepochs", "batchsize", "cutlen", "samplerate", "seconds")
    if args.sample:
        return sample_command(args)
    return train_command(args)


def train_command(args):
    from .config import BIG_FRAME, ModelConfig

    if args.cutlen % BIG_FRAME:
        raise SrnnError(f"--cutlen={args.cutlen} must be a multiple of {BIG_FRAME} (the slow tier's frame)")
    from . import checkpoint
    from .train import TrainOptions, train

    defaults = EXPERIMENTS.get(args.exp, OTHER_EXPERIMENT)
    pick = lambda flag: defaults[flag] if getattr(args, flag) is None else getattr(args, flag)  # noqa: E731
    base = checkpoint.load(args.load).config if args.load else ModelConfig()
    cfg = ModelConfig(
        slowdim=args.slowdim or base.slowdim, dim=args.dim or base.dim,
        sample_rate=args.samplerate or base.sample_rate, qtype=base.qtype,
    )
    opts = TrainOptions(
        exp=args.exp, nepochs=pick("nepochs"), batchsize=pick("batchsize"),
        trainstop=pick("trainstop"), validstop=pick("validstop"), cutlen=args.cutlen,
        svepoch=args.svepoch, seed=args.seed, load=args.load,
    )
    train(cfg, opts, log=lambda m: print(m, flush=True))
    return 0


def sample_command(args):
    import time

    from . import checkpoint, names
    from .audio import write_wav
    from .config import ModelConfig
    from .model import SampleRNN
    from .sample import Sampler, to_audio

    ckpt = checkpoint.load(args.sample)
    c = ckpt.config
    checkpoint.check_compatible(ckpt, ModelConfig(slowdim=args.slowdim or c.slowdim, dim=args.dim or c.dim,
                                                  q_levels=c.q_levels, qtype=c.qtype))
    model = SampleRNN(c)
    checkpoint.apply_weights(ckpt, model)
    rate = args.samplerate or c.sample_rate
    n = int(round(args.seconds * rate))
    t0 = time.time()
    levels, _ = Sampler(model).generate(1, n, seed=args.seed, argmax=bool(args.debug))
    took = time.time() - t0
    write_wav(names.GENERATED, to_audio(levels[0], c.qtype, c.q_levels), rate)
    print(f"wrote {names.GENERATED}: {n / rate:.2f} s at {rate} Hz from {args.sample} "
          f"in {took:.1f} s ({n / took:,.0f} samples/s, compilation included)")
    return 0


__all__ = ["SrnnError", "preprocess_main", "train_main"]
