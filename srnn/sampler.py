"""The compiled generation loop of one model, for many sequences at once: priming, a run of big
frames from a start, and teacher-forced scoring. The tiers' maths is theirs (srnn.model), the
choice of each next level the rule's (srnn.rule); this module orders the steps. A generation as a
whole (its request, its chunks, its primer) is srnn.generation's."""
import typing

import numpy as np

from . import engine
from .packed import AUTO_MIN_BYTES, StepFormat, choose
from .quantize import q_zero
from .rule import Rule, _batch
from .sparse import DEFAULT_BLOCK, SPARSE_MIN, kept_per_column

E = engine.module()
from keras import ops  # noqa: E402  (after the engine has loaded its framework quietly)


def int32_seed(seed):
    """A seed of [0, 2^32) as the int32 that the engines' counter-based draws take: those below 2^31
    unchanged (their audio as before), those above wrapped to negative ones, so that every seed a
    run takes (srnn.options.SEED_LIMIT) gives its own audio."""
    seed = int(seed)
    return seed - (1 << 32) if seed >= 1 << 31 else seed


def label_weights(mix):
    """Label weights as the compiled functions take them: a float32 tensor, or None (unconditional)."""
    return None if mix is None else ops.convert_to_tensor(np.asarray(mix, np.float32))


PRIME_CHUNK = 8192  # primer samples per pass of the frame tiers (bounds memory for long primers)


class Start(typing.NamedTuple):
    """Where a run of frames goes on from: the frame tiers' states and the last big frame of levels
    (sequences, big frame)."""
    states: tuple
    frame: object


class Sampler:
    """The compiled generation loop of one model (SampleRNN.sampler keeps one per setting).

    One loop iteration (the engine's frame_loop) produces a whole big frame (SampleRNN.frame_step:
    one step of the top tier on the last big frame, then for each of its vectors the steps of the
    tier below, down to the sample MLP), the rule drawing each next sample. Each tier's fused step
    weights (`step_weights`) are computed once per call. The original instead called three Keras
    models from Python for every sample.
    """

    def __init__(self, model, xla=True, precision="auto", layout="auto"):
        # (xla: SampleRNN.sampler's default is srnn.engine.common.generate_with_xla's, which says why)
        self.model, self.xla = model, xla
        self.precision = precision  # of the step weights (srnn.packed): float32, bfloat16, int8 or auto
        self.layout = layout  # of the pruned matrices: auto, dense or sparse (sparse_layout)
        self._chosen = {}
        self._compiled = E.model_function(model, self._loop, self.xla, static=("rule_static", "fmt", "room"))
        self._condition = E.model_function(
            model, lambda x, states, reset, mix: model.conditioning(x, states, reset, mix)[1], False)

    def initial(self, n_seqs):
        """Where a generation starts: the learned initial states and a big frame of silence."""
        c = self.model.cfg
        return Start(self.model.initial_states(n_seqs),
                     ops.full((n_seqs, c.big_frame), q_zero(c.q_levels), "int32"))

    def prime(self, levels, n_seqs, mix=None, progress=None):
        """Run the model over a primer (1-D int levels) and return the Start to continue from.

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
        states, mix = self.model.zero_states(n_seqs), label_weights(mix)
        for i in range(0, len(padded), chunk):
            states = self._condition(x[:, i:i + chunk + bf], states, np.float32(i == 0), mix)
            if progress is not None:  # a long primer takes a while: say how far it is
                progress(min(i + chunk, len(padded)))
        return Start(tuple(states), ops.convert_to_tensor(x[:, -bf:]))

    def run(self, n_frames, rule, seed, start, first, mix, fmt, room=None):
        """`n_frames` big frames from `start`, one compiled call: the frames are numbered from
        `first` (frame i's draws are a pure function of (seed, i), so a generation in several
        runs draws what one run would); `mix` the sequences' label weights (or None); `fmt` the
        step weights' StepFormat (weight_precision); `room` a Python int >= n_frames (see
        memory.piece_frames; None: a TensorFlow graph's dynamic n_frames, as --export's
        generate() has). Returns (levels (sequences, room * big frame) int32, their
        log-probabilities under the rule, the Start after the last frame)."""
        levels, logp, states, frame = self._compiled(
            n_frames, rule.static, rule.arrays, seed, tuple(start.states), start.frame, first, mix, fmt, room=room)
        return levels, logp, Start(states, frame)

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

    def score(self, levels, mix=None):
        """Teacher forcing through the step form, in this sampler's weight precision: the levels
        (n_seqs, n) are fed in turn from the learned initial states, as training feeds a first
        chunk. Returns (the most likely level at each step, the log-probability of each given
        level), both (n_seqs, n rounded down to whole big frames): what generation with these
        weights would make of this audio (its NLL, and the argmax of --debug 1)."""
        bf = self.model.cfg.big_frame
        levels = np.atleast_2d(np.asarray(levels, np.int32))
        n_seqs, n_frames = levels.shape[0], levels.shape[1] // bf
        start = self.initial(n_seqs)
        # room for a power of two of frames: one compilation serves every length up to it (scoring
        # many clips, as srnn.Model.score does, would otherwise compile once per length)
        room = 1 << max(n_frames - 1, 0).bit_length()
        targets = np.zeros((n_seqs, room, bf), np.int32)
        targets[:, :n_frames] = levels[:, :n_frames * bf].reshape(n_seqs, n_frames, bf)
        rule = Rule.of(1.0, n_seqs, argmax=True)
        picks, logp, _, _ = self._compiled(np.int32(n_frames), rule.static, rule.arrays, np.int32(0),
                                           tuple(start.states), start.frame, np.int32(0), label_weights(mix),
                                           self.weight_precision(n_seqs), targets, room=room)
        return np.asarray(picks)[:, :n_frames * bf], np.asarray(logp)[:, :n_frames * bf]

    def _loop(self, n_frames, rule_static, rule_arrays, seed, states, frame, first=0, mix=None, fmt="float32",
              targets=None, room=None):
        """The compiled body of `run` and `score`: n_frames big frames from (states, frame), each
        next level chosen by the rule (Rule.rebuild(rule_static, rule_arrays)); `targets` (batch,
        n_frames, big frame) levels to feed instead of the drawn ones (teacher forcing: `score`,
        which gets the argmax picks back). Returns levels, log-probabilities (of the levels fed
        on), and the states and last big frame to go on from."""
        m = self.model
        bf = m.cfg.big_frame
        B = _batch(frame)
        rule = Rule.rebuild(rule_static, rule_arrays)
        # One generated sample of a big model reads tens of MB of weights, so generation is
        # memory-bound: each tier fuses its consecutive linear layers here, once (see
        # FrameTier.step_weights), to read fewer bytes per sample, and may keep them in fewer bytes
        # (`fmt`, srnn.packed).
        weights = m.step_weights(fmt)
        labels = m.label_vectors(weights, mix)  # each sequence's label, per tier: fixed for the whole loop

        def body(i, frame, states):
            # this frame's uniforms, a pure function of (seed, frame index): same seed, same audio
            uniforms = E.uniforms(seed, i + first, (bf, B))
            forced = [None] * bf if targets is None else ops.unstack(targets[:, i], num=bf, axis=1)
            picks, logps = [], []

            def pick(logits, j):
                """The frame's j-th sample: the level that goes on (drawn, or forced)."""
                chosen, logp = rule.draw(logits, uniforms[j])
                given = chosen if forced[j] is None else forced[j]
                picks.append(chosen)
                logps.append(E.row_pick(logp, given))
                return given

            frame, states = m.frame_step(weights, labels, frame, states, pick)
            out = frame if targets is None else ops.stack(picks, axis=1)
            return frame, states, out, ops.stack(logps, axis=1)

        size = n_frames if room is None else room
        levels, logp, frame, states = E.frame_loop(body, n_frames, size, frame, tuple(states))
        # (size, B, bf) -> (B, size * bf)
        levels = ops.reshape(ops.transpose(levels, [1, 0, 2]), (B, size * bf))
        logp = ops.reshape(ops.transpose(logp, [1, 0, 2]), (B, size * bf))
        return levels, logp, states, frame
