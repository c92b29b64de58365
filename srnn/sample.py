"""Generation: the autoregressive loop, compiled, for many sequences at once (the engine of
`SampleRNN.generate`); the tiers' maths is theirs (srnn.model), this module only orders the steps
and draws the samples."""
import dataclasses
import functools
import math
import os
import tempfile

import numpy as np

from . import engine, memory
from .atomic import cannot_write
from .audio import write_wav_blocks
from .plots import plot_audio
from .packed import AUTO_MIN_BYTES, StepFormat, choose
from .sparse import DEFAULT_BLOCK, SPARSE_MIN, kept_per_column
from .quantize import dequantize, q_zero, scale_audio

E = engine.load()
from keras import ops  # noqa: E402  (after the engine has loaded its framework quietly)


PICK_BLOCK = 16  # levels per block of the two-level inverse CDF


def _batch(t):
    """The batch size: static when traced with a known shape (XLA wants it), else dynamic."""
    return t.shape[0] if t.shape[0] is not None else ops.shape(t)[0]


def inverse_cdf_pick(p, u):
    """Index k with cdf[k-1] <= u * total < cdf[k], for p (batch, q) >= 0 and u (batch,) in [0, 1).

    Two levels, a block of 16 levels and then a level inside it: two cumulative sums of 16
    instead of one of 256, which XLA's CPU backend computes as a quadratic reduce-window.
    """
    B, q = _batch(p), p.shape[-1]
    n_blocks = -(-q // PICK_BLOCK)
    p = ops.pad(p, [[0, 0], [0, n_blocks * PICK_BLOCK - q]])  # zero-probability padding
    blocks = ops.reshape(p, (B, n_blocks, PICK_BLOCK))
    block_sums = ops.sum(blocks, axis=-1)
    block_cdf = ops.cumsum(block_sums, axis=-1)
    target = u * block_cdf[:, -1]
    b = ops.minimum(ops.sum(ops.cast(block_cdf <= target[:, None], "int32"), axis=-1), n_blocks - 1)
    inner = ops.cumsum(E.row_pick(blocks, b), axis=-1)
    # what is left of the target inside block b; kept below the block's own total so that float
    # rounding can never carry the pick onto a zero-probability level at the block's end
    rest = ops.minimum(target - (E.row_pick(block_cdf, b) - E.row_pick(block_sums, b)),
                       inner[:, -1] * (1.0 - 1e-6))
    j = ops.sum(ops.cast(inner <= rest[:, None], "int32"), axis=-1)
    return ops.minimum(b * PICK_BLOCK + j, q - 1)


def int32_seed(seed):
    """A seed of [0, 2^32) as the int32 that the engines' counter-based draws take: those below 2^31
    unchanged (their audio as before), those above wrapped to negative ones, so that every seed a
    run takes (srnn.options.SEED_LIMIT) gives its own audio."""
    seed = int(seed)
    return seed - (1 << 32) if seed >= 1 << 31 else seed


def _weights(mix):
    """Label weights as the compiled functions take them: a float32 tensor, or None (unconditional)."""
    return None if mix is None else ops.convert_to_tensor(np.asarray(mix, np.float32))


PRIME_CHUNK = 8192  # primer samples per pass of the frame tiers (bounds memory for long primers)


class Sampler:
    """The compiled generation loop of one model (`SampleRNN.generate` keeps one per model).

    One loop iteration (the engine's frame_loop) produces a whole big frame (SampleRNN.frame_step:
    one step of the top tier on the last big frame, then for each of its vectors the steps of the
    tier below, down to the sample MLP), drawing each next sample here. Each tier's fused step
    weights (`step_weights`) are computed once before the loop. The original instead called three
    Keras models from Python for every sample.
    """

    def __init__(self, model, xla=True, precision="auto", layout="auto"):
        # XLA fuses the ~100 small ops of a big frame into one program; measured on 2 cores it
        # wins at every size, from dim 32 (5x) to dim 1024 (1.1-1.2x, 1 and 16 streams).
        self.model, self.xla = model, xla
        self.precision = precision  # of the step weights (srnn.packed): float32, bfloat16, int8 or auto
        self.layout = layout  # of the pruned matrices: auto, dense or sparse (sparse_layout)
        self._chosen = {}
        self._run = E.model_function(model, self._loop, self.xla, static=("argmax", "precision", "room"))
        self._condition = E.model_function(
            model, lambda x, states, reset, mix: model.conditioning(x, states, reset, mix)[1], False)

    def prime(self, levels, n_seqs, progress=None, mix=None):
        """Run the model over a primer (1-D int levels) and return the `start` to continue from.

        The primer is left-padded with silence to a whole number of big frames, so generation goes
        on at a frame boundary, exactly as if the model had generated the primer itself. It is fed
        as training data is (a big frame of silence, then the primer), in chunks with the states
        carried, through the frame tiers only: their states are all that carries over.
        `progress(samples done)` is called after each chunk. `mix`: the sequences' label weights
        (a conditioned model reads its primer as the label it is to continue).
        """
        c = self.model.cfg
        bf, zero = c.big_frame, q_zero(c.q_levels)
        levels = np.asarray(levels, np.int32)
        if levels.size == 0:
            return self.initial(n_seqs)
        padded = np.concatenate([np.full((-len(levels)) % bf, zero, np.int32), levels])
        x = np.tile(np.concatenate([np.full(bf, zero, np.int32), padded])[None], (n_seqs, 1))
        chunk = -(-PRIME_CHUNK // bf) * bf
        states, mix = self.model.zero_states(n_seqs), _weights(mix)
        for i in range(0, len(padded), chunk):
            states = self._condition(x[:, i:i + chunk + bf], states, np.float32(i == 0), mix)
            if progress is not None:  # a long primer takes a while: say how far it is
                progress(min(i + chunk, len(padded)))
        return tuple(states), ops.convert_to_tensor(x[:, -bf:])

    def weight_precision(self, n_seqs):
        """The step weights' format for `n_seqs` streams (a StepFormat): the block-sparse layout
        where the weights are mostly zero (sparse_layout), in the precision asked for, or auto's
        choice (made once per number of streams and layout)."""
        sparse, block = self.sparse_layout()
        precision = self.precision
        if precision == "auto":
            key = (n_seqs, sparse)
            if key not in self._chosen:
                weights = self.model.step_weights(StepFormat("float32", sparse, block))
                self._chosen[key] = choose("auto", weights, n_seqs)
            precision = self._chosen[key]
        return StepFormat(precision, sparse, block)

    def sparse_layout(self):
        """((v name, blocks kept per block column), ...) of the matrices to run block-sparse, and the
        block: with layout `auto` those at most SPARSE_MIN dense in blocks (a pruned model's, or a
        dense model's that are mostly zero), with `sparse` every one the block tiles, with `dense`
        none. A pruned model's masks say it; a dense model's weights are looked at only where they
        are too big for the caches (AUTO_MIN_BYTES: a small model stays as it was)."""
        cfg = self.model.cfg
        block = cfg.sparse_block or DEFAULT_BLOCK
        if self.layout == "dense":
            return (), ()
        if cfg.sparse_block:
            mats = {name: mask.numpy() for name, (_, _, mask) in self.model.pruned_kernels().items()}
        else:
            shapes = cfg.pruned_shapes()
            if self.layout == "auto" and 4 * sum(a * b for a, b in shapes.values()) < AUTO_MIN_BYTES:
                return (), ()
            mats = {name: np.asarray(kernel()) for name, kernel in self.model.prunable_kernels().items()
                    if shapes[name][0] % block[1] == 0 and shapes[name][1] % block[0] == 0}
        chosen = []
        for name, w in mats.items():
            keep, n_blocks = kept_per_column(w, block, whole_blocks=bool(cfg.sparse_block))
            if self.layout == "sparse" or keep <= (1.0 - SPARSE_MIN) * n_blocks:
                chosen.append((name, max(keep, 1)))
        return tuple(chosen), (block if chosen else ())

    def initial(self, n_seqs):
        """States and context a generation starts from: the learned initial states and a big frame
        of silence."""
        c = self.model.cfg
        return self.model.initial_states(n_seqs), ops.full((n_seqs, c.big_frame), q_zero(c.q_levels), "int32")

    def generate(self, n_seqs, n_samples, temperature=1.0, seed=0, argmax=False, start=None, mix=None):
        """Draw `n_samples` levels for each of `n_seqs` sequences.

        temperature: a number or one per sequence (divides the logits). seed: the draws are a
        pure function of (seed, step), so the same seed gives the same audio. argmax: take the most
        likely level instead of drawing (the original's --debug 1). start: (states, frame) to
        continue from instead of `initial()`. mix: (n_seqs, n_labels) label weights per sequence
        (a conditioned model).
        Returns (levels (n_seqs, n_samples) int32, log-probabilities of the chosen levels under
        the tempered distribution (n_seqs, n_samples) float32).
        """
        pieces = list(self.pieces(n_seqs, n_samples, temperature, seed, argmax, start, mix=mix))
        return tuple(np.concatenate(parts, axis=1) for parts in zip(*pieces))

    def pieces(self, n_seqs, n_samples, temperature=1.0, seed=0, argmax=False, start=None, piece=None, mix=None):
        """`generate` in pieces of at most `piece` samples: yields (levels, log-probabilities) of
        each piece in turn, the states carried from one to the next; the pieces joined are what
        one call would draw (the draws are numbered from the start, not per piece)."""
        bf = self.model.cfg.big_frame
        temps = np.broadcast_to(np.asarray(temperature, np.float32), (n_seqs,)).copy()
        states, frame = start if start is not None else self.initial(n_seqs)
        states, frame, mix = tuple(states), ops.cast(frame, "int32"), _weights(mix)
        precision = self.weight_precision(n_seqs)  # the step weights' StepFormat
        per_call, room = memory.piece_frames(n_samples, bf, piece)
        total = max(1, math.ceil(n_samples / bf))
        done = 0
        while done < total:
            n_frames = min(per_call, total - done)
            levels, logp, states, frame = self._run(np.int32(n_frames), bool(argmax), temps, np.int32(int32_seed(seed)),
                                                    states, frame, np.int32(done), mix, precision, room=room)
            keep = min(n_frames * bf, n_samples - done * bf)
            done += n_frames
            yield np.asarray(levels)[:, :keep], np.asarray(logp)[:, :keep]

    def score(self, levels, mix=None):
        """Teacher forcing through the step form, in this sampler's weight precision: the levels
        (n_seqs, n) are fed in turn from the learned initial states, as training feeds a first
        chunk. Returns (the most likely level at each step, the log-probability of each given
        level), both (n_seqs, n rounded down to whole big frames): what generation with these
        weights would make of this audio (its NLL, and the argmax of --debug 1)."""
        bf = self.model.cfg.big_frame
        levels = np.atleast_2d(np.asarray(levels, np.int32))
        n_seqs, n_frames = levels.shape[0], levels.shape[1] // bf
        states, frame = self.initial(n_seqs)
        # room for a power of two of frames: one compilation serves every length up to it (scoring
        # many clips, as srnn.Model.score does, would otherwise compile once per length)
        room = 1 << max(n_frames - 1, 0).bit_length()
        targets = np.zeros((n_seqs, room, bf), np.int32)
        targets[:, :n_frames] = levels[:, :n_frames * bf].reshape(n_seqs, n_frames, bf)
        picks, logp, _, _ = self._run(np.int32(n_frames), True, np.ones((n_seqs,), np.float32), np.int32(0),
                                      tuple(states), frame, np.int32(0), _weights(mix), self.weight_precision(n_seqs),
                                      targets, room=room)
        return np.asarray(picks)[:, :n_frames * bf], np.asarray(logp)[:, :n_frames * bf]

    def _loop(self, n_frames, argmax, temps, seed, states, frame, first=0, mix=None, precision="float32",
              targets=None, room=None):
        """n_frames big frames from (states, frame); `first` numbers the first of them (the draws
        of frame i are a function of (seed, i)); `mix` the sequences' label weights; `precision`
        the step weights'; `targets` (batch, n_frames, big frame) levels to feed instead of the
        drawn ones (teacher forcing: `score`); `room` (a Python int >= n_frames, see
        memory.piece_frames) the frames the outputs have room for, so that n_frames can be a
        tensor and one compilation serves every n_frames up to it (the frames past n_frames are
        zeros; None: a TensorFlow graph's dynamic n_frames, as --export's generate() has). Returns
        levels (drawn, or the argmax picks when forced), log-probabilities (of the levels fed on),
        and the states and last big frame to go on from."""
        m = self.model
        c = m.cfg
        bf = c.big_frame
        B = _batch(frame)
        # One generated sample of a big model reads tens of MB of weights, so generation is
        # memory-bound: each tier fuses its consecutive linear layers here, once (see
        # FrameTier.step_weights), to read fewer bytes per sample, and may keep them in fewer bytes
        # (`precision`, srnn.packed).
        weights = m.step_weights(precision)
        labels = m.label_vectors(weights, mix)  # each sequence's label, per tier: fixed for the whole loop

        def draw(logits, u, forced):
            """Next level from softmax(logits / T): argmax, or inverse-CDF with one uniform per
            stream (Gumbel-max would need q_levels random numbers per draw, and drawing them was
            most of the time of a small model). Returns it, the level that goes on (it, or the
            `forced` one) and that level's log-probability."""
            logp = ops.log_softmax(logits / temps[:, None])
            if argmax:
                nxt = ops.cast(ops.argmax(logp, axis=-1), "int32")
            else:
                nxt = inverse_cdf_pick(ops.exp(logp), u)
            given = nxt if forced is None else forced
            return nxt, given, E.row_pick(logp, given)

        def body(i, frame, states):
            # this frame's uniforms, a pure function of (seed, frame index): same seed, same audio
            uniforms = E.uniforms(seed, i + first, (bf, B))
            forced = [None] * bf if targets is None else ops.unstack(targets[:, i], num=bf, axis=1)
            picks, logps = [], []

            def pick(logits, j):
                """The frame's j-th sample: the level that goes on (drawn, or forced)."""
                chosen, nxt, lp = draw(logits, uniforms[j], forced[j])
                picks.append(chosen)
                logps.append(lp)
                return nxt

            frame, states = m.frame_step(weights, labels, frame, states, pick)
            out = frame if targets is None else ops.stack(picks, axis=1)
            return frame, states, out, ops.stack(logps, axis=1)

        size = n_frames if room is None else room
        levels, logp, frame, states = E.frame_loop(body, n_frames, size, frame, tuple(states))
        # (size, B, bf) -> (B, size * bf)
        levels = ops.reshape(ops.transpose(levels, [1, 0, 2]), (B, size * bf))
        logp = ops.reshape(ops.transpose(logp, [1, 0, 2]), (B, size * bf))
        return levels, logp, states, frame


class Spool:
    """One generated sequence's levels in a temporary file (2 bytes a sample), with their range."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.lo, self.hi, self.count = np.inf, -np.inf, 0

    def add(self, levels):
        if len(levels):
            try:
                np.asarray(levels, np.uint16).tofile(self.file)  # q_levels <= 65536
            except OSError as e:
                raise cannot_write(f"a temporary file in {tempfile.gettempdir()} (set TMPDIR elsewhere)", e) from None
            self.lo, self.hi = min(self.lo, int(levels.min())), max(self.hi, int(levels.max()))
            self.count += len(levels)

    def blocks(self, size=1 << 16):
        self.file.seek(0)
        while (block := np.fromfile(self.file, np.uint16, count=size)).size:
            yield block

    def head(self, count):
        self.file.seek(0)
        return np.fromfile(self.file, np.uint16, count=count)

    def close(self):
        self.file.close()


def to_audio(levels, qtype, q_levels, lo=None, hi=None, scaling="peak"):
    """Levels -> float audio in [-0.475, 0.475] as it is written (srnn.quantize.scale_audio:
    silence at zero by default, or the original's min-max). `lo`, `hi`: the whole sequence's
    lowest and highest levels, when `levels` is one block of it."""
    bounds = {} if lo is None else dict(zip(("lo", "hi"), dequantize(np.array([lo, hi]), qtype, q_levels)))
    zero = float(dequantize(np.array([q_zero(q_levels)]), qtype, q_levels)[0])
    return scale_audio(dequantize(levels, qtype, q_levels), scaling, zero, **bounds)


PICTURE_SECONDS = 60  # a picture shows at most this much (a picture of an hour is a grey band)


@dataclasses.dataclass
class Clip:
    """One generated sequence's files: its WAV, and its picture beside it, with a title."""
    wav: str
    title: str

    @property
    def picture(self):
        return os.path.splitext(self.wav)[0] + ".png"


def write_clips(pieces, clips, qtype, q_levels, rate, primer=(), scaling="peak"):
    """Levels to files, the one way for --sample, --audition and the tests. `pieces`: the
    generation's (levels (sequences, n), ...) in turn, as Sampler.pieces yields them (or one
    array's worth); each sequence's levels, after the `primer`, wait in a temporary file, so
    memory does not grow with the length (the scaling needs the whole range), then become its
    WAV, written in blocks, and its picture (at most PICTURE_SECONDS, the title saying so; a line
    where the primer ends), scaled by `scaling` (to_audio). Returns each picture's audio (the whole
    clip when it is short)."""
    spools = [Spool() for _ in clips]
    primer = np.asarray(primer)
    try:
        for spool in spools:
            spool.add(primer)  # the primer opens every sequence
        for levels, *_ in pieces:
            for spool, row in zip(spools, levels):
                spool.add(row)
        shown = []
        for spool, clip in zip(spools, clips):
            audio = functools.partial(to_audio, qtype=qtype, q_levels=q_levels, lo=spool.lo, hi=spool.hi,
                                      scaling=scaling)
            write_wav_blocks(clip.wav, map(audio, spool.blocks()), rate)
            head = audio(spool.head(PICTURE_SECONDS * rate))
            cut = "" if len(head) == spool.count else f" (the first {PICTURE_SECONDS} s)"
            plot_audio(clip.picture, head, rate, clip.title + cut, primer_s=len(primer) / rate if primer.size else None)
            shown.append(head)
    finally:
        for spool in spools:
            spool.close()
    return shown
