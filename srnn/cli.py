"""Command-line front ends: both scripts' flags, their checks, and the call into the package
(srnn.parts for preprocess.py, srnn.commands for train_srnn.py), under run_cli's one-line errors."""
import argparse
import sys

from . import __version__, precision
from .cluster import TIMEOUT as CLUSTER_TIMEOUT
from .distribute import KINDS
from .labels import MODES as LABEL_MODES
from .config import FRAMES, MAX_LAYERS, RNNS, SAMPLE_RATE
from .checks import OptionError
from .errors import SrnnError, run_cli
from .flags import as_flags
from .quantize import QTYPES, SCALINGS
from .sparse import DEFAULT_BLOCK


SERVE_PORT = 8000  # --serve's port when none is given


def parse_port(text):
    """--serve's value: a port number (argparse type)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, e.g. 8000, got {text!r} (to listen on another "
                                         f"address than 127.0.0.1 give --host ADDRESS)") from None


def preprocess_parser():
    p = argparse.ArgumentParser(
        prog="preprocess.py",
        description="Cut a folder of audio into consecutive mono parts for training "
        "(DIR_parts/p0.wav, p1.wav, ... and prompts.txt). Reads WAV, FLAC, OGG, AIFF, MP3 and "
        "whatever else soundfile reads, recursively, in sorted order.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("dir", metavar="DIR", help="folder with audio files (searched recursively)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each part in seconds (default 8)")
    p.add_argument("--samplerate", type=int, default=SAMPLE_RATE,
                   help=f"sample rate of the parts in Hz (default {SAMPLE_RATE})")
    p.add_argument("--out", default=None, help="output folder (default: DIR_parts next to DIR)")
    p.add_argument("--force", action="store_true",
                   help="replace the parts (p*.wav) and prompts.txt already in the output folder; "
                   "other files there are left alone")
    p.add_argument("--labels", choices=LABEL_MODES, default=None,
                   help="folder: each subfolder of DIR is a label (its name; e.g. DIR/speech, DIR/music) for a "
                   "conditioned model; each label's audio is cut on its own, its parts are labelled in "
                   "prompts.txt and interleaved with the other labels' (default: no labels, `none`)")
    return p


def preprocess_main(argv=None):
    from .parts import describe, make_parts

    args = preprocess_parser().parse_args(argv)
    summary = make_parts(
        args.dir, out_dir=args.out, seconds=args.seconds, samplerate=args.samplerate,
        force=args.force, labels=args.labels,
        log=lambda msg: print(msg, file=sys.stderr if msg.startswith("warning") else sys.stdout, flush=True),
    )
    print(describe(summary, args.seconds))
    return 0


def _index(text):
    """A split boundary: an int line index, or a float fraction in (0, 1]."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a line index or a fraction, got {text!r}") from None


ARCHITECTURE_HELP = """\
architecture: frame tiers over a sample-level MLP (--frames F1,...,FK: K frame tiers, top first)

  frames of F1 -> tier 1: RNN x N (--slowdim) -> F1/F2 vectors, one per step of tier 2
                                                   v
  frames of F2 -> tier 2: input + vector above -> RNN x N (--dim) -> F2/F3 vectors
                                                   v
  ...                                             ...
  frames of FK -> tier K: input + vector above -> RNN x N (--dim) -> FK vectors, one per sample
                                                   v
  last FK samples -> embeddings -> sample MLP (+ vector above) -> q_levels logits

  the original (default)      --frames 8,2 --rnn gru --rnn-layers 1 (the reference's 3 tiers)
  the reference's 2 tiers     --frames 16
  the music fork's 2 tiers    --frames 16 --rnn lstm --rnn-layers 5 --skip --qtype mu-law
  a typical music model       --frames 16,4 --rnn lstm --rnn-layers 3 --skip
"""


def train_parser():
    p = argparse.ArgumentParser(
        prog="train_srnn.py",
        description="Train a SampleRNN (by default the original's three-tier model) on "
        "blizzard/EXP_parts (made by preprocess.py), or generate audio from a checkpoint with --sample.",
        epilog=ARCHITECTURE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for flags in (_run_flags, _architecture_flags, _sparsity_flags, _watch_flags, _sampling_flags, _live_flags):
        flags(p)
    return p


def _run_flags(p):
    """The run: what to train on or sample from, its length, batches and seed."""
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
    p.add_argument("--slowdim", type=int, default=None, help="top (slow) tier RNN size (default 1024, "
                   "or the checkpoint's with --sample/--load)")
    p.add_argument("--dim", type=int, default=None, help="RNN size of every other frame tier and the "
                   "sample MLP's size (default 1024, or the checkpoint's with --sample/--load)")
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
                   help="truncated-BPTT length in samples, a multiple of the top tier's frame (the first of "
                   "--frames: 8 by default) (default 256)")
    p.add_argument("--debug", type=int, default=0,
                   help="1: when sampling, take the most likely sample instead of drawing (default 0)")
    p.add_argument("--samplerate", type=int, default=None,
                   help=f"sample rate in Hz of the parts and of generated.wav (default {SAMPLE_RATE}, or the "
                   "checkpoint's with --sample)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for the initial weights, the data order and the sampling draws: the same "
                   "seed gives the same losses and the same audio (default 1337; with --load, the "
                   "checkpoint's)")
    p.add_argument("--qtype", choices=QTYPES, default=None,
                   help="quantisation of the audio for training: linear (the original's), mu-law or "
                   "a-law; stored in the checkpoint and used by sampling. Losses in bits are comparable "
                   "only between runs of one qtype and --q-levels (default linear)")


def _architecture_flags(p):
    """The model's architecture, the labels, the optimizer, devices and precision."""
    a = p.add_argument_group("architecture (stored in the checkpoint: --sample and --load need none of these)")
    a.add_argument("--frames", default=None, metavar="F1,F2,...",
                   help="frame size in samples of each frame tier, top tier first, each a multiple of "
                   "the next: 8,2 is the original's three tiers, 16 a two-tier model, 64,16,4 four tiers "
                   f"(default {','.join(map(str, FRAMES))})")
    a.add_argument("--rnn", default=None, metavar="|".join(RNNS), help="the frame tiers' RNN (default gru)")
    a.add_argument("--rnn-layers", type=int, default=None, metavar="N",
                   help=f"RNN layers per frame tier, 1 to {MAX_LAYERS} (default 1)")
    a.add_argument("--skip", action="store_true", default=None,
                   help="skip connections: each tier's output layer reads all its RNN layers' outputs "
                   "(for --rnn-layers above 1)")
    a.add_argument("--emb-size", type=int, default=None, metavar="N",
                   help="sample MLP embedding width per previous sample (default 256)")
    a.add_argument("--q-levels", type=int, default=None, metavar="N",
                   help="quantisation levels, 2 to 65536 (default 256)")
    p.add_argument("--no-cond", action="store_true",
                   help="train without the labels of a labelled corpus (prompts.txt's second column, from "
                   "preprocess.py --labels folder): an unconditional model, for comparison. By default a "
                   "labelled corpus trains a model conditioned on its labels")
    p.add_argument("--learning-rate", type=float, default=None, metavar="LR",
                   help="Adam's learning rate (default 0.001; with --load, the checkpoint's)")
    p.add_argument("--distribute", choices=KINDS, default="none",
                   help="none: one device; mirrored: one model copy per local GPU (or per --devices); "
                   "multiworker: every device of the machines named in TF_CONFIG (TensorFlow) or in the "
                   "KERAS_DISTRIBUTION_* variables (JAX), only the chief (process 0) writes files. --batchsize is "
                   "the global batch, split over the copies (default none)")
    p.add_argument("--cluster-timeout", type=float, default=CLUSTER_TIMEOUT, metavar="S",
                   help="--distribute multiworker on JAX: seconds for every process to come before a clear error "
                   f"(default {CLUSTER_TIMEOUT:g})")
    p.add_argument("--devices", default=None,
                   help="with --distribute mirrored: comma-separated devices, e.g. GPU:0,GPU:1 (default: all GPUs)")
    p.add_argument("--precision", choices=precision.TRAIN, default=None,
                   help="training arithmetic: float32 (the original's), or mixed_bfloat16 / mixed_float16: the "
                   "layers compute in 16 bits, the weights, optimizer, logits and loss stay float32 (float16 "
                   "with loss scaling; it is for GPUs). bfloat16 is faster only on GPUs and CPUs with BF16 "
                   "instructions. Stored in the checkpoint (default float32, or the checkpoint's with --load)")


def _sparsity_flags(p):
    """Block sparsity, and early stopping."""
    sp = p.add_argument_group("sparsity (block-sparse weights trained in: big models sample in real time on a CPU)")
    sp.add_argument("--sparsity", type=float, default=None, metavar="S",
                    help="prune the large matrices to this fraction of zero weights, 0 <= S < 1 (e.g. 0.9, 0.95), "
                    "by block magnitude, rising gradually (Zhu & Gupta's cubic schedule) from --prune-start to "
                    "--prune-end; the masks are saved in the checkpoint and the sampler runs the pruned matrices in "
                    "a block-sparse layout. With --load of a dense checkpoint: prunes it; of a sparse one: may "
                    "only rise (default: dense, or the checkpoint's schedule)")
    sp.add_argument("--prune-start", type=int, default=None, metavar="STEP",
                    help="optimizer steps from the start of this run (or of --load's) before pruning begins "
                    "(default: a fifth of the run's steps)")
    sp.add_argument("--prune-end", type=int, default=None, metavar="STEP",
                    help="optimizer steps from the start of this run by which --sparsity is reached, after which "
                    "the masks are fixed; 0 prunes to --sparsity at once, before the first step (one-shot) "
                    "(default: three fifths of the run's steps)")
    sp.add_argument("--prune-block", default=None, metavar="ROWSxCOLS",
                    help="the pruned blocks: ROWS outputs by COLS inputs; every matrix must be tiled by them "
                    f"(default {'x'.join(map(str, DEFAULT_BLOCK))}: 32 outputs of one input, which the sampler runs "
                    "faster than LPCNet's 16x1 and tiles every width that is a multiple of 32)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop training after N epochs without a better validation loss (default 0: off)")


def _watch_flags(p):
    """Watching training, exporting, a time limit."""
    w = p.add_argument_group("watching training")
    w.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="write TensorBoard event files to DIR: the loss of every step, each epoch's "
                   "train/valid bits, seconds, samples/s and learning rate, the test bits, and the "
                   "audition clips (view with `tensorboard --logdir DIR`)")
    w.add_argument("--audition", type=int, default=0, metavar="N",
                   help="after every N epochs, generate --nseqs clips (default 2) of --seconds (default 4) "
                   "from the current weights into EXP_samples/e{epoch}_{i}.wav with pictures, and say "
                   "whether each is near-silent, clipped, DC-offset or stuck in a loop (default 0: off)")
    p.add_argument("--export", metavar="DIR", default=None,
                   help="write the model as a TensorFlow SavedModel into the new folder DIR, with a "
                   "compiled generate(n_seqs, n_samples, temperature, seed) that needs only TensorFlow (and mix, the "
                   "label weights, for a model trained on labels): "
                   "with --sample, the checkpoint's model (nothing is generated); after training, the "
                   "best epoch's")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop training after the epoch during which M minutes have passed (and save, as "
                   "at the end); --nepochs still caps the epochs (default: no time limit)")


def _sampling_flags(p):
    """--sample's settings."""
    g = p.add_argument_group("sampling (with --sample)")
    g.add_argument("--seconds", type=float, default=None, help="seconds of audio to generate (default 4)")
    g.add_argument("--nseqs", type=int, default=None,
                   help="sequences to generate in one batch: generated.wav for one, generated_0.wav, "
                   "generated_1.wav, ... for several (default 1; with --audition, clips per audition, "
                   "default 2)")
    g.add_argument("--temperature", type=float, nargs="+", default=[1.0], metavar="T",
                   help="divides the logits before each draw: below 1 is more conservative, above 1 "
                   "wilder; one value, or one per sequence (default 1)")
    g.add_argument("--label", nargs="+", default=None, metavar="NAME",
                   help="for a model trained on labels: what to generate, a label (speech) or a mixture of "
                   "labels with weights (speech:0.7,music:0.3, a weighted mean of their embeddings); one "
                   "for all sequences, or one per sequence. Without it, --nseqs of every label, written "
                   "to generated_LABEL.wav (or generated_LABEL_0.wav, ...)")
    g.add_argument("--sample-precision", choices=precision.SAMPLE, default="auto",
                   help="how the sampler keeps its weights: float32, bfloat16 or int8 (one scale per column; "
                   "fewer bytes to read per sample, only the weights rounded, the sums float32); auto: "
                   "float32 for a small model, else whichever this machine runs fastest, measured at start "
                   "(default auto)")
    g.add_argument("--scaling", choices=SCALINGS, default=None,
                   help="how the written audio is scaled into [-0.475, 0.475] (the WAVs and pictures of --sample and "
                   "--audition, and --export's audio): peak keeps silence at zero and puts the largest magnitude at "
                   "0.475; fixed keeps silence at zero and the levels' own scale, the extreme levels at 0.475 (what a "
                   "stream does: it cannot know its peak in advance; the same as peak for a clip that reaches an "
                   "extreme level); minmax is the original's min-max scaling, which moves zero where the generated "
                   "range is lopsided (a DC offset, a click at each end) (default peak; fixed with --stream/--serve)")
    g.add_argument("--sample-layout", choices=("auto", "dense", "sparse"), default="auto",
                   help="how the sampler multiplies the prunable matrices: sparse runs each as a gather and a dense "
                   "product of its kept blocks (fewer weights read per sample: a pruned model samples several times "
                   "faster, the same audio up to float rounding); auto: sparse for the matrices at most half dense "
                   "in blocks, those of a pruned model (--sparsity) and of a big one whose weights are mostly zero; "
                   "dense: never (default auto)")
    g.add_argument("--prime", metavar="AUDIO", default=None,
                   help="an audio file (any length, any format preprocess reads) to start from: it is "
                   "resampled and quantised as training data is and run through the model, and "
                   "generation continues it; the output holds the primer followed by --seconds of "
                   "continuation")


def _live_flags(p):
    """--stream and --serve."""
    live = p.add_argument_group("live (with --sample): hear the audio as it is generated")
    live.add_argument("--stream", metavar="OUT", default=None,
                      help="write the audio as it is generated: `-` for raw 16-bit little-endian PCM on "
                      "standard output (one channel per sequence; every message goes to standard error), e.g. "
                      "`... --stream - | aplay -r 16000 -f S16_LE -c 1 -t raw -`; or a new WAV file that grows, a "
                      "valid WAV of everything so far at every moment. Ends after --seconds, at Ctrl-C or SIGTERM, or "
                      "when the reader goes away, with every generated sample written")
    live.add_argument("--endless", action="store_true",
                      help="with --stream or --serve: generate until stopped instead of for --seconds")
    live.add_argument("--serve", metavar="PORT", type=parse_port, nargs="?", const=SERVE_PORT, default=None,
                      help=f"serve a page to hear the model in a browser: its controls (temperature, seed, length or "
                      f"endless, the label of a conditioned model), the audio played as it is generated, a live "
                      f"spectrogram, the speed and the buffer; at http://127.0.0.1:PORT/ (default port {SERVE_PORT}; "
                      f"0: any free port). Stop with Ctrl-C")
    live.add_argument("--host", default=None, metavar="ADDRESS",
                      help="with --serve: the address to listen on, e.g. 0.0.0.0 for every interface; anyone who can "
                      "reach it can make this machine generate (default 127.0.0.1: this machine only)")
    live.add_argument("--max-listeners", type=int, default=None, metavar="N",
                      help="with --serve: streams at once (default: as many as this machine generates in real time "
                      "with a margin, measured when the server starts)")



def train_main(argv=None):
    args = train_parser().parse_args(argv)
    check_live_flags(args)
    from .commands import sample_command, train_command

    try:
        if args.sample:
            check_sample_flags(args)
            return sample_command(args)
        return train_command(args)
    except OptionError as e:  # the library names its parameters; the command line, its flags
        raise SrnnError(as_flags(e, sample=bool(args.sample))) from None


def check_sample_flags(args):
    """What --sample refuses among the training flags, before the file is read."""
    from .options import check_engine_options

    if args.sparsity is not None:
        raise SrnnError("--sparsity is for training: --sample takes a model's sparsity from its checkpoint's masks")
    check_engine_options(export=args.export)


def check_live_flags(args):
    """--stream, --serve and their companions; the defaults that depend on them (--seconds: 4 or
    endless; --scaling: peak for files, fixed for what streams)."""
    live = args.stream is not None or args.serve is not None
    for flag, given in (("--stream", args.stream is not None), ("--serve", args.serve is not None)):
        if given and not args.sample:
            raise SrnnError(f"{flag} plays a model: give --sample FILE.h5")
    if args.stream is not None and args.serve is not None:
        raise SrnnError("--stream and --serve: give one (--stream writes one generation, --serve a page for many)")
    if live and args.export:
        live_flag = "--stream" if args.stream is not None else "--serve"
        raise SrnnError(f"--export writes a SavedModel and {live_flag} plays: give one")
    if args.stream == "":
        raise SrnnError("--stream needs `-` (standard output) or a new WAV file's name")
    if args.endless and not live:
        raise SrnnError("--endless is for --stream or --serve: a file of --sample has an end (give --seconds)")
    if args.endless and args.seconds is not None:
        raise SrnnError(f"--endless and --seconds {args.seconds:g}: give one")
    for flag, value in (("--host", args.host), ("--max-listeners", args.max_listeners)):
        if value is not None and args.serve is None:
            raise SrnnError(f"{flag} is for --serve")
    if args.max_listeners is not None and args.max_listeners < 1:
        raise SrnnError(f"--max-listeners={args.max_listeners} must be 1 or more")
    if args.serve is not None and not 0 <= args.serve <= 65535:
        raise SrnnError(f"--serve {args.serve}: a port lies between 1 and 65535 (0: any free port)")
    if live and args.scaling not in (None, "fixed"):
        raise SrnnError(f"--scaling {args.scaling}: what streams cannot know its peak in advance; its scaling is fixed "
                        f"(leave --scaling out)")
    if args.serve is not None and (args.nseqs or 1) > 1:
        raise SrnnError("--nseqs is --stream's and --sample's: each listener of --serve hears one sequence")
    if args.seconds is None and not args.endless:
        args.seconds = 4.0
    if args.scaling is None:
        args.scaling = "fixed" if live else "peak"


def preprocess_entry():
    """The `srnn-preprocess` command (pyproject.toml), the same as `python preprocess.py`."""
    sys.exit(run_cli(preprocess_main))


def train_entry():
    """The `srnn-train` command (pyproject.toml), the same as `python train_srnn.py`."""
    sys.exit(run_cli(train_main))
