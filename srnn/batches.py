"""Feeding parts to truncated BPTT: splits of prompts.txt, minibatches, overlapping chunks.

A batch of `batchsize` whole parts is quantised, padded to a multiple of `cutlen` (with a mask),
prefixed with a big frame (8 samples for the original) of silence and cut into chunks
`x[:, i*cutlen : (i+1)*cutlen + 8]`. Consecutive chunks overlap by a big frame of *real* samples
(as the Theano reference did), so every target
sees its true context; the recurrent state is carried from chunk to chunk, and the first chunk of
each batch has `reset` set. Files are read only when their batch is needed, so memory does not
grow with the corpus.
"""
import concurrent.futures
import dataclasses
import os
import stat

import numpy as np
import soundfile as sf

from . import names
from .errors import SrnnError, first_line
from .labels import one_hot, vocabulary
from .quantize import q_zero, quantize


@dataclasses.dataclass
class Chunk:
    x: np.ndarray  # (batch, cutlen + big frame) int32 levels; inputs and targets
    mask: np.ndarray  # (batch, cutlen) float32; 1 for real targets x[:, big frame:], 0 for padding
    reset: bool  # first chunk of its batch: start from the learned initial states
    mix: np.ndarray = None  # (batch, n_labels) float32: each sequence's label, one-hot; n_labels 0 if none
    # a process's rows of a cluster's batch (Feeder `rows`): the whole batch's real samples, and
    # per label, which the loss is averaged over (None: this chunk's own, from `mask`)
    count: float = None
    label_counts: np.ndarray = None


def read_prompts(parts_dir, hint=None):
    """Paths of the parts listed in `parts_dir/prompts.txt`, in file order."""
    return [path for path, _ in read_prompt_lines(parts_dir, hint)]


def read_prompt_lines(parts_dir, hint=None):
    """(path, label) of each part listed in `parts_dir/prompts.txt`, in file order; the label is
    the second column (`none` when it is missing)."""
    path = os.path.join(parts_dir, names.PROMPTS)
    hint = hint or f"run `python preprocess.py {parts_dir.removesuffix('_parts')}` first"
    if not os.path.isdir(parts_dir):
        raise SrnnError(f"{parts_dir} not found: {hint}")
    if not os.path.isfile(path):
        raise SrnnError(f"{path} not found: {hint}")
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:  # a stray byte would become U+FFFD in a label or a name: said, never guessed
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # -sig: a byte-order mark is no name
            except UnicodeDecodeError as e:
                raise SrnnError(f"{path} line {number} is not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                f"{e.start + 1}): save the file as UTF-8") from None
            name, _, label = line.rstrip("\r\n").partition("\t")
            if name.strip():
                lines.append((part_path(parts_dir, name.strip(), f"{path} line {number}"),
                              label.strip() or names.NO_LABEL))
    if not lines:
        raise SrnnError(f"{path} lists no parts: {hint}")
    return lines


def part_path(parts_dir, name, where):
    """The path of a part that prompts.txt names: a relative path that stays in the parts folder
    (an absolute path or `..` would train on files from anywhere, unseen)."""
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        raise SrnnError(f"{where} names {name!r}, outside {parts_dir}: list the parts by their names in "
                        f"that folder (e.g. p0.wav)")
    return os.path.join(parts_dir, name)


def corpus_labels(parts_dir, hint=None):
    """The label vocabulary of a parts folder: () when unlabelled (srnn.labels.vocabulary)."""
    return vocabulary([label for _, label in read_prompt_lines(parts_dir, hint)],
                      os.path.join(parts_dir, names.PROMPTS))


def stop_index(value, n, flag):
    """A split boundary: an int is a line index (negative counts from the end, as in Python),
    a float in (0, 1] a fraction of the `n` lines."""
    if isinstance(value, float) and not value.is_integer():
        if not 0 < value <= 1:
            raise SrnnError(f"{flag}={value}: a fraction must lie in (0, 1]")
        return int(round(value * n))
    if isinstance(value, float) and value == 1.0:
        return n
    idx = int(value)
    if idx < 0:
        idx += n
    if not 0 <= idx <= n:
        raise SrnnError(f"{flag}={value} is outside prompts.txt, which has {n} lines")
    return idx


def split_files(files, trainstop, validstop):
    """Lines [0, trainstop) train, [trainstop, validstop) validate, the rest is the test set."""
    n = len(files)
    t = stop_index(trainstop, n, "--trainstop")
    v = stop_index(validstop, n, "--validstop")
    if v < t:
        raise SrnnError(f"--validstop ({v}) is before --trainstop ({t}): validation would be empty")
    return files[:t], files[t:v], files[v:]


def _unreadable(path, exc):
    """The error for a part that cannot be read: missing, or not audio."""
    if not os.path.exists(path):
        return SrnnError(f"{path} (listed in prompts.txt) is missing: run preprocess again")
    return SrnnError(f"{path} cannot be read as audio ({first_line(exc)}): run preprocess again")


def check_cutlen(cutlen, big_frame):
    if cutlen <= 0 or cutlen % big_frame:
        raise SrnnError(f"--cutlen={cutlen} must be a positive multiple of {big_frame} (the top tier's frame, "
                        f"from --frames)")


def check_part(path, samplerate):
    """Frames of one part from its header, after checking it exists, is a regular file, is mono at
    `samplerate` and, if it holds floats, that they are finite."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise _unreadable(path, e) from None
    if not stat.S_ISREG(mode):  # a FIFO would hang the reader forever, a device never end
        raise SrnnError(f"{path} (listed in prompts.txt) is not a regular file: list only audio files")
    try:
        info = sf.info(path)
    except Exception as e:
        raise _unreadable(path, e) from None
    _check_format(path, info.samplerate, info.channels, samplerate)
    if info.subtype in FLOAT_SUBTYPES:  # preprocess writes 16-bit parts, which are always finite
        try:
            finite = all(np.isfinite(block).all() for block in sf.blocks(path, blocksize=1 << 16, dtype="float32"))
        except Exception as e:
            raise _unreadable(path, e) from None
        if not finite:
            raise SrnnError(f"{path} (listed in prompts.txt) holds NaN or infinite samples: run preprocess again "
                            f"(it leaves such files out) or remove it from prompts.txt")
    return info.frames


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


def _check_format(path, sr, channels, samplerate):
    if sr != samplerate or channels != 1:
        raise SrnnError(
            f"{path} is {sr} Hz with {channels} channel(s); the parts must be {samplerate} Hz "
            f"mono: run preprocess again (with --samplerate {samplerate})"
        )


def load_part(path, cfg):
    """One part as int32 levels of the model `cfg` (its quantisation); it must be mono at the
    model's sample rate."""
    try:
        x, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:
        raise _unreadable(path, e) from None
    _check_format(path, sr, x.shape[1], cfg.sample_rate)
    return quantize(x[:, 0], cfg.qtype, cfg.q_levels)


def batch_chunks(seqs, cutlen, big_frame, q_levels, mix=None, longest=None):
    """Chunks for one batch of quantised sequences (list of 1-D int arrays) for a model of that
    big frame and number of levels; `mix` their label weights (batch, n_labels), the same for
    every chunk (default: no labels); `longest` the length to pad to, if not the longest of them
    (a process's rows of a cluster's batch: every process makes as many chunks)."""
    check_cutlen(cutlen, big_frame)
    longest = max(len(s) for s in seqs) if longest is None else longest
    padded = -(-longest // cutlen) * cutlen
    x = np.full((len(seqs), big_frame + padded), q_zero(q_levels), np.int32)
    mask = np.zeros((len(seqs), padded), np.float32)
    for b, s in enumerate(seqs):
        x[b, big_frame:big_frame + len(s)] = s
        mask[b, :len(s)] = 1.0
    for i in range(padded // cutlen):
        yield Chunk(
            x=x[:, i * cutlen:(i + 1) * cutlen + big_frame],
            mask=mask[:, i * cutlen:(i + 1) * cutlen],
            reset=(i == 0),
            mix=np.zeros((len(seqs), 0), np.float32) if mix is None else mix,
        )


class Feeder:
    """Minibatches of one split, read lazily; an epoch is an iterator of Chunks."""

    def __init__(self, files, batchsize, cutlen, cfg, split="training", warn=print, whole=False, labels=None):
        """Batches for a model of `cfg` (its quantisation, sample rate, big frame and labels: the
        facts are the model's, never a default here). `whole`: keep a last, smaller batch instead
        of leaving the remainder out (for a final evaluation, which has no carried state to keep
        the batch size for). `labels`: each file's label, for a model conditioned on cfg.labels
        (a model without labels trains unconditionally)."""
        if batchsize <= 0:
            raise SrnnError(f"--batchsize must be positive, got {batchsize}")
        check_cutlen(cutlen, cfg.big_frame)
        if len(files) < batchsize:
            raise SrnnError(
                f"the {split} split has {len(files)} file(s), fewer than one batch of {batchsize}: "
                f"change --trainstop/--validstop or lower --batchsize"
            )
        self.files, self.batchsize, self.cutlen, self.split = list(files), batchsize, cutlen, split
        self.rows = None  # (this process, processes) of a cluster: see `shard`
        self.cfg, self.big_frame = cfg, cfg.big_frame
        self.vocab = tuple(cfg.labels)
        self.label_ids = {}
        if self.vocab:
            if labels is None:
                raise ValueError("a feeder for a conditioned model needs each file's label")
            for f, label in zip(self.files, labels):
                if label not in self.vocab:
                    raise SrnnError(f"{f} is labelled {label!r} in prompts.txt, which the model does not know "
                                    f"(it knows {', '.join(self.vocab)}): train a new model, or with --no-cond")
                self.label_ids[f] = self.vocab.index(label)
        # every part's header, once: a missing or wrong part is reported now, not hours into
        # training, and the chunk counts of the progress bar need no more reading
        self.frames = {f: check_part(f, cfg.sample_rate) for f in self.files}
        self.n_batches = -(-len(files) // batchsize) if whole else len(files) // batchsize
        dropped = 0 if whole else len(files) - self.n_batches * batchsize
        if dropped:
            warn(f"warning: {dropped} {split} file(s) do not fill a batch of {batchsize}; "
                 f"each epoch leaves {dropped} out")

    def batches(self, seed=None):
        """File lists per batch; with a seed, the files are shuffled first (new order per seed)."""
        order = list(self.files)
        if seed is not None:
            order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
        b = self.batchsize
        return [order[i * b:(i + 1) * b] for i in range(self.n_batches)]  # the last may be smaller if whole

    def count_chunks(self, batches):
        """Chunks an epoch will yield, from the files' headers (no audio is decoded)."""
        return sum(self.batch_chunk_count(batch) for batch in batches)

    def batch_chunk_count(self, batch):
        """Chunks one batch yields: its longest part in whole cutlens."""
        return -(-max(max(self.frames[f] for f in batch), 1) // self.cutlen)

    def shard(self, index, processes):
        """Process `index` of a cluster of `processes` (srnn.cluster): each batch stays the whole
        cluster's, and this process reads, feeds and carries only its share of its rows."""
        if self.batchsize % processes:
            raise SrnnError(f"--batchsize {self.batchsize} does not split over {processes} processes: use a multiple "
                            f"of {processes}")
        self.rows = (index, processes)

    def mine(self, batch):
        """This process's files of a batch: all of them, or its rows of a cluster's batch."""
        if self.rows is None:
            return batch
        index, processes = self.rows
        share = len(batch) // processes
        return batch[index * share:(index + 1) * share]

    def load(self, batch):
        """The quantised parts of one batch (this process's)."""
        return [load_part(f, self.cfg) for f in self.mine(batch)]

    def mix(self, batch):
        """The label weights of one batch's files (batch, n_labels): one-hot; (batch, 0) unlabelled."""
        return one_hot([self.label_ids[f] for f in batch], len(self.vocab))

    def batch_chunks(self, seqs, batch=None):
        """The chunks of one batch (`batch`: its files, for their labels; in a cluster, for the
        whole batch's length and real samples, which its headers give)."""
        mine = self.mine(batch) if batch is not None else None
        mix = self.mix(mine) if mine is not None and self.vocab else None
        if self.rows is None:
            yield from batch_chunks(seqs, self.cutlen, self.big_frame, self.cfg.q_levels, mix)
            return
        lengths = np.array([self.frames[f] for f in batch])
        labels = self.mix(batch) if self.vocab else np.zeros((len(batch), 0), np.float32)
        for c, chunk in enumerate(batch_chunks(seqs, self.cutlen, self.big_frame, self.cfg.q_levels, mix,
                                               longest=int(lengths.max()))):
            real = np.clip(lengths - c * self.cutlen, 0, self.cutlen).astype(np.float64)
            yield dataclasses.replace(chunk, count=float(real.sum()), label_counts=labels.T.astype(np.float64) @ real)

    def chunks(self, batches):
        for batch in batches:
            yield from self.batch_chunks(self.load(batch), batch)

    def loaded(self, batches, start=0, prefetch=True):
        """(index, quantised parts) for each batch from `start` on. With `prefetch`, the next
        batch is read and quantised in a background thread while the caller trains on this one
        (file reading and NumPy release the GIL); never more than one batch ahead."""
        if not prefetch:
            for b in range(start, len(batches)):
                yield b, self.load(batches[b])
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="srnn-read") as pool:
            ahead = pool.submit(self.load, batches[start]) if start < len(batches) else None
            for b in range(start, len(batches)):
                seqs = ahead.result()  # re-raises a reading error (SrnnError) here, in order
                ahead = pool.submit(self.load, batches[b + 1]) if b + 1 < len(batches) else None
                yield b, seqs


@dataclasses.dataclass
class Splits:
    """The three feeders of a training run; `test` is None when prompts.txt ends at validstop."""
    train: Feeder
    valid: Feeder
    test: Feeder = None


def prepare_splits(parts_dir, trainstop, validstop, batchsize, cutlen, cfg, hint=None, warn=print):
    """Read prompts.txt and build the feeders for a model of `cfg` (quantisation, sample rate, big
    frame); every data problem surfaces here, before any model is built (and before TensorFlow is
    even imported)."""
    lines = read_prompt_lines(parts_dir, hint)
    train, valid, test = split_files([p for p, _ in lines], trainstop, validstop)
    labels = dict(lines)
    def feeder(files, batchsize, split, **more):
        return Feeder(files, batchsize, cutlen, cfg, split, warn=warn, labels=[labels[f] for f in files], **more)

    splits = Splits(
        train=feeder(train, batchsize, "training"),
        valid=feeder(valid, batchsize, "validation"),
        test=feeder(test, min(batchsize, len(test)), "test", whole=True) if test else None,
    )
    for feed in filter(None, (splits.train, splits.valid, splits.test)):
        present = {labels[f] for f in feed.files}
        missing = [label for label in cfg.labels if label not in present]
        if missing:
            warn(f"warning: the {feed.split} split has no part labelled {', '.join(missing)}: reorder "
                 f"prompts.txt or change --trainstop/--validstop")
    # a chunk longer than the longest part is all padding, and memory: use the part's length
    feeders = [f for f in (splits.train, splits.valid, splits.test) if f is not None]
    longest = max(n for f in feeders for n in f.frames.values())
    enough = max(-(-longest // cfg.big_frame) * cfg.big_frame, cfg.big_frame)
    if cutlen > enough:
        warn(f"note: --cutlen {cutlen} is longer than the longest part ({longest} samples): using {enough}")
        for f in feeders:
            f.cutlen = enough
    return splits
