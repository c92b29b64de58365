"""SampleRNN (Mehri et al., ICLR 2017) as Keras 3 layers: frame tiers over a sample-level MLP.

    x (levels) ──scale──┬──────────────────────────────┬────────────────┬──────────────┐
                        │ frames of F1 = big frame     │ frames of F2   │  frames of FK│  last FK samples
                        ▼                              ▼                ▼              ▼  (embedded)
                 ┌─────────────┐  F1/F2 vectors  ┌─────────────┐      ┌─────────────┐  FK vectors ┌──────────┐
                 │ frame tier 1│ ──────────────▶ │ frame tier 2│ ···▶ │ frame tier K│ ──────────▶ │sample MLP│─▶ logits
                 │ RNN×N (top) │   per step      │ in + RNN×N  │      │ in + RNN×N  │  per step   └──────────┘
                 └─────────────┘                 └─────────────┘      └─────────────┘

Each frame tier k runs its RNN (GRU or LSTM, N layers) once per frame of F_k samples; its input is
the scaled frame (the top tier) or a linear projection of it plus the vector the tier above emitted
for this step; its output layer emits F_k / F_(k+1) vectors, one per step of the tier below (F_(K+1)
= 1: one per sample). The sample MLP embeds the previous F_K samples, adds the bottom tier's
vector and gives q_levels logits. `--frames 8,2` with one GRU layer is the original's three-tier
model: for a chunk x of shape (batch, cutlen + 8)

    slow tier   x[:, :-8] in frames of 8 -> GRU(slowdim) -> Dense(4*dim): one vector per mid frame
    mid tier    x[:, 6:-2] in frames of 2 -> Dense(dim) + slow vector -> GRU(dim) -> Dense(2*dim)
    sample tier x[t-2], x[t-1] -> Embedding(256) each -> Dense(dim) + mid vector
                -> Dense(dim, relu) -> Dense(dim, relu) -> Dense(256) = logits for x[t]

Every Dense and RNN kernel is weight-normalised (w = g * v / ||v||, g starting at the initial
column norms, so the layer starts as plain), and each RNN layer has a learned initial state used
when a batch starts (`reset`).

A conditioned model (ModelConfig.labels) adds a learned vector per label to the input of every
tier: to the gate pre-activations of each frame tier's first RNN layer (its input projection) and
to the sample MLP's first layer, before h1 -- the global conditioning of WaveNet. A label is given
as `mix`, a row of weights over the labels per sequence (one-hot in training, any mixture at
generation), so the vector is mix @ table.

Each tier is written once and has two forms: `call` over a whole chunk (training, priming) and
`step` (generation), where consecutive linear layers are fused once per generation by
`step_weights` to read fewer bytes per sample. Tests hold the two forms equal.

Precision (srnn.precision): `SampleRNN(cfg, precision="mixed_bfloat16")` puts a Keras mixed policy
on every tier, so the chunk form computes in 16 bits around float32 weights (the logits stay
float32); the step form always computes in float32, and its matrices may be packed in bfloat16 or
int8 (srnn.packed).
"""
from . import engine
from .config import ModelConfig
from .layers import WNDense, WNRNN, scale_levels
from .tiers import FrameTier, SampleTier

E = engine.module()
import keras  # noqa: E402  (after the engine has loaded its framework quietly)
from keras import ops  # noqa: E402

LOG2E = 1.4426950408889634  # nats -> bits


class SampleRNN(keras.Model):
    """The frame tiers and the sample MLP. `forward` runs one training chunk; `frame_step` one big
    frame of generation (srnn.sampler compiles the loop over it, srnn.generation runs a generation)."""

    def __init__(self, config=None, precision="float32", **kwargs):
        super().__init__(name=kwargs.pop("name", "sample_rnn"), **kwargs)
        c = self.cfg = config or ModelConfig()
        widths, ratios = c.widths(), c.ratios()
        # the chunk form's precision (srnn.precision): a Keras dtype policy on every tier; the
        # weights are float32 in all of them, and the step form (generation) computes in float32
        self.precision = precision
        dtype = None if precision == "float32" else precision
        # Built in __init__ with known widths, so weights exist right after construction (loading
        # a checkpoint and counting parameters need no dummy call).
        self.frame_tiers = [
            FrameTier(frame=f, ratio=r, units=widths[k], out_units=(widths + [c.dim])[k + 1], cell=c.rnn,
                      layers=c.rnn_layers, skip=c.skip, top=(k == 0), n_labels=c.n_labels,
                      sparse=bool(c.sparse_block), name=f"frame{k}", dtype=dtype)
            for k, (f, r) in enumerate(zip(c.frames, ratios))
        ]
        self.sample_tier = SampleTier(c.frame, c.dim, c.q_levels, c.emb_size, n_labels=c.n_labels, name="sample",
                                      sparse=bool(c.sparse_block), dtype=dtype)
        self.built = True
        self._samplers = {}

    @property
    def tiers(self):
        return self.frame_tiers + [self.sample_tier]

    def prunable_kernels(self):
        """{checkpoint name of v: a function giving its effective kernel} of the matrices a sparse
        model prunes (srnn.sparse.mask_suffixes), whether or not this one does: the sampler looks
        at their zeros to choose its layout."""
        out = {}
        for tier in self.tiers:
            for part in tier.sublayers():
                if isinstance(part, WNDense):
                    out[f"{tier.name}/{part.name}/v"] = part.kernel
                elif isinstance(part, WNRNN):
                    out[f"{tier.name}/{part.name}/vx"] = part.input_kernel
                    out[f"{tier.name}/{part.name}/vh"] = lambda part=part: part.kernels()[2]
        from .sparse import mask_suffixes

        return {name: out[name] for name in mask_suffixes(self.cfg)}

    def pruned_kernels(self):
        """{checkpoint name of v: (v, g, mask)} of a sparse model's pruned kernels (srnn.prune)."""
        return {f"{tier.name}/{part.name}/{v.name}": (v, g, mask) for tier in self.tiers for part in tier.sublayers()
                for v, g, mask in getattr(part, "pruned_kernels", list)()}

    def named_weights(self):
        """(name, variable) in a fixed order; checkpoint names are `tier/layer/weight`, e.g.
        `frame0/rnn0/vx`, `frame1/in/v`, `sample/embedding/embeddings`."""
        return [(f"{tier.name}/{part.name}/{w.name}", w) for tier in self.tiers for part in tier.sublayers()
                for w in part.weights]

    def get_config(self):
        return {"config": self.cfg.to_json()}

    @classmethod
    def from_config(cls, config):
        return cls(ModelConfig.from_json(config["config"]))

    # ---- carried states: one tensor per RNN layer, top tier first

    def state_sizes(self):
        return [n for tier in self.frame_tiers for n in tier.state_sizes()]

    def zero_states(self, batch):
        return tuple(ops.zeros((batch, n)) for n in self.state_sizes())

    def initial_states(self, batch):
        """The learned initial states, tiled over the batch (where generation starts)."""
        return tuple(s for tier in self.frame_tiers for s in tier.initial_states(batch))

    def _per_tier(self, states):
        out, i = [], 0
        for tier in self.frame_tiers:
            out.append(list(states[i:i + len(tier.rnns)]))
            i += len(tier.rnns)
        return out

    # ---- training graph

    def _mix(self, mix):
        """The label weights the tiers read: None for an unconditional model (which ignores any
        `mix`, e.g. the empty one training passes), required for a conditioned one."""
        if not self.cfg.labels:
            return None
        if mix is None:
            raise ValueError(f"this model is conditioned on labels ({', '.join(self.cfg.labels)}): "
                             f"pass mix, a (batch, {self.cfg.n_labels}) row of label weights per sequence")
        return mix

    def conditioning(self, x, states, reset, mix=None):
        """The frame tiers over a chunk: the bottom tier's vector per target (batch, cutlen, dim)
        and the last states. Priming needs only this part. `mix` (batch, n_labels): the label
        weights of each sequence, for a conditioned model."""
        c = self.cfg
        mix = self._mix(mix)
        bf, B, T = c.big_frame, ops.shape(x)[0], ops.shape(x)[1] - c.big_frame
        xs = scale_levels(x, c.q_levels)
        cond, new = None, []
        for tier, tier_states in zip(self.frame_tiers, self._per_tier(states)):
            f = tier.frame
            frames = ops.reshape(xs[:, bf - f:bf - f + T], (B, T // f, f))  # each target's frame
            cond, last = tier(frames, cond=cond, states=tier_states, reset=reset, mix=mix)
            new += [ops.cast(s, "float32") for s in last]  # carried between chunks as float32
        return cond, tuple(new)

    def forward(self, x, states, reset, mix=None):
        """One chunk. x (batch, cutlen + big_frame) int levels; states the carried states (ignored
        where `reset`); mix (batch, n_labels) the label weights (a conditioned model). Returns
        logits (batch, cutlen, q_levels) for the targets x[:, big_frame:], and the last states."""
        cond, states = self.conditioning(x, states, reset, mix)
        bf, fr, T = self.cfg.big_frame, self.cfg.frame, ops.shape(x)[1] - self.cfg.big_frame
        prev = [x[:, bf - fr + j: bf - fr + j + T] for j in range(fr)]
        return self.sample_tier(prev, cond, self._mix(mix)), states

    def call(self, inputs):
        return self.forward(*inputs)

    # ---- generation

    def step_weights(self, precision="float32"):
        """Every tier's fused step weights, once per generation; the matrices a step multiplies in
        `precision` (srnn.packed: float32, bfloat16 or int8, or a StepFormat with the block-sparse
        layout of a pruned model's matrices)."""
        below = [t.cond_projection(precision) for t in self.tiers[1:]]
        return ([t.step_weights(b, precision) for t, b in zip(self.frame_tiers, below)]
                + [self.sample_tier.step_weights(precision)])

    def frame_step(self, weights, labels, frame, states, draw):
        """One big frame of generation in the step form: the top tier's step on the last big frame
        `frame` (batch, big frame) of levels, then for each vector it emits the steps of the tier
        below, down to the sample MLP, whose logits `draw(logits, j)` (j: the sample's place in
        the frame) turns into the level that goes on. `weights` = step_weights(), `labels` =
        label_vectors(). Returns (the new big frame (batch, big frame) of levels, the states)."""
        c = self.cfg
        per_tier = self._per_tier(states)
        history = ops.unstack(frame, num=c.big_frame, axis=1)  # the previous big frame, oldest first
        new = []

        def descend(k, cond):
            """Tier k's step (given the vector from above), then everything below it."""
            if k == len(self.frame_tiers):
                logits = self.sample_tier.step(weights[k], (history + new)[-c.frame:], cond, labels[k])
                new.append(draw(logits, len(new)))
                return
            tier = self.frame_tiers[k]
            ctx = frame if k == 0 else ops.stack((history + new)[-tier.frame:], 1)
            vectors, per_tier[k] = tier.step(weights[k], scale_levels(ctx, c.q_levels), cond, per_tier[k], labels[k])
            for j in range(tier.ratio):
                descend(k + 1, vectors[:, j])

        descend(0, None)
        return ops.stack(new, axis=1), tuple(s for tier in per_tier for s in tier)

    def label_vectors(self, weights, mix):
        """Per tier, each sequence's label vector in its step form (mix @ the tier's step table):
        constant through a generation, so computed once. None per tier when unconditional."""
        mix = self._mix(mix)
        return [None if mix is None else ops.matmul(ops.cast(mix, "float32"), w.label) for w in weights]

    def sampler(self, xla=None, precision="auto", layout="auto"):
        """The compiled generation loop (srnn.sampler), one per setting: `xla` (None: the engine's
        choice, srnn.engine.common.generate_with_xla), `precision` of its step weights
        (srnn.packed), `layout` of the pruned matrices (auto, dense or sparse). A
        generation as a whole goes through srnn.generation."""
        from .engine.common import generate_with_xla
        from .sampler import Sampler

        xla = generate_with_xla(self.cfg) if xla is None else xla
        if (xla, precision, layout) not in self._samplers:
            self._samplers[xla, precision, layout] = Sampler(self, xla=xla, precision=precision, layout=layout)
        return self._samplers[xla, precision, layout]


def label_bits(logits, targets, mask, mix):
    """Per label, the cross-entropy in bits summed over the real samples of its sequences
    (n_labels,), for the per-label losses (each label's sum over its count, mix^T @ the rows' real
    samples). With a mixture row a sequence counts towards each label by its weight."""
    ce = E.cross_entropy(targets, logits)
    return E.matvec_t(ops.cast(mix, "float32"), ops.sum(ce * mask, axis=1)) * LOG2E


def loss_bits(logits, targets, mask, count=None):
    """Masked mean softmax cross-entropy in bits per sample: the 'cost in bits' of the original.
    `count` is the number of real samples to divide by (default: this mask's); a replica of a
    distributed step divides its own sum by the whole batch's count."""
    ce = E.cross_entropy(targets, logits)
    count = ops.maximum(ops.sum(mask), 1.0) if count is None else count
    return ops.sum(ce * mask) / count * LOG2E
