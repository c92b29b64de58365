"""Block-sparse weights: the schedule, the masks, training with them (masks hold after
steps, exact resume mid-schedule, pruning a dense checkpoint on --load), the sparse sampler against
the dense one on the same weights, and every bad input. Small models, in-process."""
import json
import os

import h5py
import numpy as np
import pytest

from conftest import run_tool
from srnn import checkpoint, sparse
from srnn.config import ModelConfig
from srnn.errors import SrnnError
from srnn.generation import generate_levels
from test_untrusted import TRAIN, clean_error, invalid, write_parts

SPARSE_CFG = ModelConfig(slowdim=32, dim=32, sparse_block=(16, 1))


# ---- the schedule and the masks (NumPy only)

def test_cubic_schedule_values():
    s = sparse.Schedule(target=0.9, start=100, end=300)  # every 2 steps
    assert s.every == 2
    assert s.at(0) == s.at(99) == 0.0
    assert s.at(100) == 0.0  # the first update point: the cubic starts at the initial sparsity
    assert s.at(200) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)  # half-way: 0.7875, most of it done
    assert s.at(201) == s.at(200)  # between updates the masks stay
    assert s.at(300) == s.at(10 ** 6) == 0.9
    assert s.at(299) < 0.9
    rising = [s.at(t) for t in range(100, 301)]
    assert rising == sorted(rising)
    again = sparse.Schedule(target=0.95, start=0, end=1000, initial=0.5)  # a higher target on --load
    assert again.at(0) == 0.5 and again.at(500) == pytest.approx(0.95 - 0.45 * 0.125)
    one_shot = sparse.Schedule(target=0.95, start=0, end=0)
    assert one_shot.at(0) == 0.95


def test_balanced_mask_keeps_the_largest_blocks_and_never_brings_one_back(rng):
    w = rng.normal(size=(64, 48)).astype(np.float32)
    block = (16, 1)  # 16 outputs x 1 input
    mask = sparse.balanced_mask(w, np.ones_like(w), 0.75, block)
    kept = mask.reshape(64, 3, 16)
    assert np.all(kept.min(axis=2) == kept.max(axis=2))  # whole blocks
    assert np.all(kept[:, :, 0].sum(axis=0) == 16)  # each block column keeps 16 of 64 blocks
    scores = np.square(w.reshape(64, 3, 16)).sum(axis=2)
    for j in range(3):  # the kept ones are the largest of their column
        assert scores[kept[:, j, 0] == 1, j].min() > scores[kept[:, j, 0] == 0, j].max()
    # the weights change, the sparsity rises: a pruned block stays pruned even if it grew large
    w2 = w * 1.0
    w2[mask == 0] = 100.0
    tighter = sparse.balanced_mask(w2, mask, 0.9, block)
    assert np.all(tighter <= mask) and sparse.mask_sparsity([tighter]) == pytest.approx(1 - 6 / 64)
    assert sparse.kept_per_column(tighter, block) == (6, 64)


def test_config_lists_the_masks_and_refuses_a_block_that_does_not_tile():
    shapes = SPARSE_CFG.weight_shapes()
    assert shapes["frame0/rnn0/maskh"] == (32, 96) and shapes["sample/h2/mask"] == (32, 32)
    assert "frame0/rnn0/maskx" not in shapes and "sample/in/mask" not in shapes  # they stay dense
    assert shapes["sample/out/mask"] == (32, 256)  # read every sample: pruned too
    assert SPARSE_CFG.count_params() == ModelConfig(slowdim=32, dim=32).count_params()
    assert "sparse_block" not in json.loads(ModelConfig().to_json())  # a dense model's config as before
    with pytest.raises(SrnnError, match="^prune_block 64x1: .* do not tile"):
        ModelConfig(slowdim=32, dim=32, sparse_block=(64, 1))


# ---- training with masks

def _pruned_sparse_model(sparsity=0.75):
    from srnn.model import SampleRNN
    from srnn.prune import Pruner
    from srnn.training import Steps

    model = SampleRNN(SPARSE_CFG)
    steps = Steps(model, xla=False)
    pruner = Pruner(model, steps, sparse.Schedule(sparsity, 0, 0), SPARSE_CFG.sparse_block)
    return model, steps, pruner


def test_masks_hold_after_optimizer_steps(rng):
    """Pruned weights are zero in the variables after every step (v, the effective kernel and
    Adam's moments), and the masks do not move."""
    model, steps, pruner = _pruned_sparse_model()
    x = rng.integers(0, 256, size=(2, 64 + 8)).astype(np.int32)
    mask = np.ones((2, 64), np.float32)
    states = steps.zero_states(2)
    masks0 = {n: m.numpy().copy() for n, (_, _, m) in model.pruned_kernels().items()}
    for i in range(4):
        assert pruner.before_step() == (i == 0)  # one-shot: pruned before the first step only
        loss, states = steps.train_step(x, mask, np.float32(i == 0), states, None)[:2]
        for name, (v, _, m) in model.pruned_kernels().items():
            if i == 0:
                masks0[name] = m.numpy().copy()
            assert np.array_equal(m.numpy(), masks0[name]), name
            assert not np.any(v.numpy()[m.numpy() == 0]), name
    assert pruner.reached() == pytest.approx(0.75)
    kernel = model.sample_tier.h2.kernel().numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.75) and np.isfinite(float(loss))


def test_sparse_sampler_equals_dense_sampler_on_pruned_weights():
    """The block-sparse layout draws the same levels as the dense product of the same (pruned)
    weights (float32), and teacher-forced NLL agrees within 0.01 bits (int8)."""
    model, _, pruner = _pruned_sparse_model(sparsity=0.9)
    pruner.before_step()
    # without XLA, which would compile each for one use (the command line's compiled block-sparse
    # sampler runs in test_training_resumes_exactly_mid_schedule_and_saves_masks)
    sparse_s, dense_s = model.sampler(layout="auto"), model.sampler(layout="dense")
    fmt = sparse_s.weight_precision(2)
    assert len(fmt.sparse) == 8 and fmt.block == (16, 1) and dense_s.weight_precision(2).sparse == ()
    a, logp_a = generate_levels(sparse_s, 2, 400, seed=5)
    b, logp_b = generate_levels(dense_s, 2, 400, seed=5)
    assert np.mean(a == b) > 0.99, np.mean(a == b)  # equal but for rare float ties
    # on the same levels, the log-probability of each under both: the same NLL
    same = a == b
    assert abs(logp_a[same].mean() - logp_b[same].mean()) * np.log2(np.e) < 0.01


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8"])
def test_sparse_matrix_product_equals_the_dense_one(rng, precision):
    """SparseMatrix (balanced or not: room for the fullest block column) times a batch of rows, in
    each precision, against the dense product in that precision (srnn.packed.pack)."""
    from keras import ops

    from srnn.packed import SparseMatrix, matmul, pack

    w = rng.normal(size=(64, 96)).astype(np.float32) * sparse.random_mask((64, 96), 0.25, (32, 1), rng)
    w[:, :32] *= sparse.expand(np.arange(64)[:, None] != 7, (32, 1))  # one column keeps a block fewer
    x = rng.normal(size=(3, 64)).astype(np.float32)
    keep = sparse.kept_per_column(w, (32, 1))[0]
    got = np.asarray(matmul(ops.convert_to_tensor(x), SparseMatrix(ops.convert_to_tensor(w), keep, (32, 1), precision)))
    want = np.asarray(matmul(ops.convert_to_tensor(x), pack(ops.convert_to_tensor(w), precision)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 if precision == "float32" else 2e-2)


def test_sampler_folds_h1_only_into_a_dense_output_layer():
    """Where the sample MLP's h1 is dense but the tier above's output layer is sparse, the two are
    folded into one (dense) product, not packed by the output layer's blocks; where both are
    sparse, neither is folded."""
    from srnn.packed import SparseMatrix

    model, _, pruner = _pruned_sparse_model(sparsity=0.75)
    pruner.before_step()
    both = model.step_weights(model.sampler().weight_precision(1))[1]
    assert isinstance(both.out_w, SparseMatrix) and isinstance(both.below.kernel, SparseMatrix)
    model.sample_tier.h1.mask.assign(np.ones(model.sample_tier.h1.mask.shape, np.float32))
    fmt = model.sampler().weight_precision(1)
    names = [n for n, _ in fmt.sparse]
    assert "frame1/out/v" in names and "sample/h1/v" not in names
    folded = model.step_weights(fmt)[1]
    assert folded.below.fold and not isinstance(folded.out_w, SparseMatrix)
    np.testing.assert_allclose(np.asarray(folded.out_w), np.asarray(model.step_weights("float32")[1].out_w))


def test_pruner_never_prunes_at_the_schedules_start():
    """A schedule that starts at the sparsity reached (a weights-only file's masks kept fixed, or a
    higher --sparsity before --prune-start) prunes nothing, though one matrix's own rounding would
    ask for a block fewer at the model's overall sparsity."""
    from srnn.prune import Pruner

    model, steps, _ = _pruned_sparse_model()
    masks = {n: m.numpy() for n, (_, _, m) in model.pruned_kernels().items()}
    masks["sample/out/v"][:, :16] = sparse.expand(np.arange(32)[:, None] < 9, (16, 1))  # 9 of 32 kept, 8 elsewhere
    for name, (_, _, m) in model.pruned_kernels().items():
        first = np.arange(m.shape[0])[:, None] < m.shape[0] // 4  # a quarter of the inputs, in every block column
        quarter = sparse.expand(first, (16, 1)).repeat(m.shape[1] // 16, axis=1)
        m.assign(masks[name] if name == "sample/out/v" else quarter)
    pruner = Pruner(model, steps, None, (16, 1))
    pruner.schedule = sparse.Schedule(pruner.reached(), 0, 0, pruner.reached())
    before = {n: m.numpy().copy() for n, (_, _, m) in model.pruned_kernels().items()}
    assert not pruner.before_step()
    assert all(np.array_equal(before[n], m.numpy()) for n, (_, _, m) in model.pruned_kernels().items())


def test_a_dense_model_that_is_mostly_zero_samples_sparse(monkeypatch):
    """auto looks at a big dense model's zeros (here any size: the size threshold lowered), and
    runs a matrix that is mostly zero blocks, even unbalanced, in the sparse layout with room for
    its fullest block column; `sparse` forces the layout on every prunable matrix."""
    import srnn.sampler
    from srnn.model import SampleRNN

    model = SampleRNN(ModelConfig(slowdim=32, dim=32))
    assert model.sampler().weight_precision(1).sparse == ()  # small: not even looked at
    fmt = model.sampler(layout="sparse").weight_precision(1)
    assert len(fmt.sparse) == 8 and all(keep == 32 for _, keep in fmt.sparse)  # dense: every block kept
    v = model.sample_tier.h2.v
    zeros = np.zeros(v.shape, np.float32)
    zeros[:3] = v.numpy()[:3]  # 3 of 32 inputs kept, in every block column
    zeros[5, :32] = 1.0  # and one more in the first block column only
    v.assign(zeros)
    monkeypatch.setattr(srnn.sampler, "AUTO_MIN_BYTES", 0)
    assert model.sampler(layout="auto").weight_precision(1).sparse == (("sample/h2/v", 4),)


def _train(tmp_path, *extra, exp="t", nepochs=1, load=None):
    args = [a if not a.startswith("--exp") else f"--exp={exp}" for a in TRAIN]
    return run_tool("train_srnn.py", *args, f"--nepochs={nepochs}", *extra, *(["--load", load] if load else []),
                    cwd=tmp_path)


def _losses(path):
    train = checkpoint.load(str(path)).train
    return train["train_bits"], train["valid_bits"]


@pytest.mark.slow  # trainings through the command line
def test_training_resumes_exactly_mid_schedule_and_saves_masks(tmp_path, no_xla):
    """Two epochs in one run, and one + --load one, with the schedule running across the epoch
    boundary: the same losses and masks; the log and the config say the sparsity reached."""
    write_parts(tmp_path, n=2, seconds=0.05)  # 13 chunks an epoch
    flags = ["--sparsity", "0.75", "--prune-start", "3", "--prune-end", "20", "--svepoch", "1", "--prune-block", "16x1"]
    whole = _train(tmp_path, *flags, nepochs=2, exp="t")
    assert whole.returncode == 0, whole.stderr
    assert "pruning: sparsity 0.0000 now, 0.75 from optimizer step 3 to 20" in whole.stdout
    assert "Epoch 1 sparsity 0.7500 (of 0.75; optimizer step 26)" in whole.stdout
    (tmp_path / "blizzard" / "u_parts").symlink_to(tmp_path / "blizzard" / "t_parts")
    first = _train(tmp_path, *flags, nepochs=1, exp="u")
    assert first.returncode == 0, first.stderr
    e0 = checkpoint.load(str(tmp_path / "u_srnn_sz16_e0.h5"))
    assert 0 < e0.config.sparsity < 0.75  # the schedule was half-way at the end of epoch 0
    rest = _train(tmp_path, nepochs=2, exp="u", load="u_srnn_sz16_e0.h5")
    assert rest.returncode == 0, rest.stderr
    assert _losses(tmp_path / "t_srnn_sz16_e1.h5") == _losses(tmp_path / "u_srnn_sz16_e1.h5")
    a, b = (checkpoint.load(str(tmp_path / f"{e}_srnn_sz16_e1.h5")) for e in "tu")
    assert a.config.sparsity == b.config.sparsity == 0.75
    for name in SPARSE_CFG.weight_shapes():
        if name.endswith(("mask", "maskx", "maskh")):
            assert np.array_equal(a.weights[name], b.weights[name]), name
    with h5py.File(tmp_path / "t_srnn_sz16_e1.h5") as f:
        assert f["weights/sample/h2/mask"].dtype == np.uint8
    # sampled with the block-sparse layout, chosen from the masks
    out = run_tool("train_srnn.py", "--sample", "t_srnn_sz16_e1.h5", "--seconds", "0.05", cwd=tmp_path)
    assert out.returncode == 0 and "block-sparse (16x1 blocks)" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow  # trainings through the command line
def test_load_of_a_dense_checkpoint_prunes_it_one_shot(tmp_path, no_xla):
    write_parts(tmp_path, n=2, seconds=0.05)
    assert _train(tmp_path).returncode == 0
    dense = checkpoint.load(str(tmp_path / "t_srnn_sz16_e0.h5"))
    assert not dense.config.sparse_block
    (tmp_path / "blizzard" / "p_parts").symlink_to(tmp_path / "blizzard" / "t_parts")
    out = _train(tmp_path, "--sparsity", "0.5", "--prune-end", "0", "--prune-block", "16x1", exp="p", nepochs=2,
                 load="t_srnn_sz16_e0.h5")
    assert out.returncode == 0, out.stderr
    assert "0.5 at optimizer step 13 (one-shot)" in out.stdout and "Epoch 1 sparsity 0.5000" in out.stdout
    pruned = checkpoint.load(str(tmp_path / "p_srnn_sz16_e1.h5"))
    assert pruned.config.sparse_block == (16, 1) and pruned.config.sparsity == 0.5
    assert pruned.train["prune_start"] == pruned.train["prune_end"] == 13
    # the sparsity may rise on --load, never fall
    worse = _train(tmp_path, "--sparsity", "0.25", exp="p", nepochs=3, load="p_srnn_sz16_e1.h5")
    assert worse.returncode != 0 and "would lower it; give at least 0.5" in worse.stderr
    assert not (tmp_path / "p_srnn_sz16_e2.h5").exists()


@pytest.mark.slow  # trainings through the command line
def test_a_new_schedule_on_an_overshooting_checkpoint_reads_back(tmp_path, no_xla):
    """Balanced masks round each column's blocks, so a model may stand a little above its target;
    a --load that asks for the same sparsity on a schedule of its own starts that schedule at the
    target (a schedule never falls), and the checkpoint it writes reads back."""
    write_parts(tmp_path, n=2, seconds=0.05)
    assert _train(tmp_path, "--sparsity", "0.72", "--prune-end", "0", "--prune-block", "16x1").returncode == 0
    e0 = checkpoint.load(str(tmp_path / "t_srnn_sz16_e0.h5"))
    assert e0.config.sparsity > 0.72  # the case in question: the masks overshoot
    again = _train(tmp_path, "--sparsity", "0.72", "--prune-start", "0", "--prune-end", "5", nepochs=2,
                   load="t_srnn_sz16_e0.h5")
    assert again.returncode == 0, again.stderr
    e1 = checkpoint.load(str(tmp_path / "t_srnn_sz16_e1.h5"))
    assert e1.config.sparsity == e0.config.sparsity and e1.train["sparsity_initial"] == 0.72


# ---- bad input: one line, nothing written

@pytest.mark.parametrize("flags, words", [
    (["--sparsity", "1"], ["--sparsity=1.0 must lie in [0, 1)"]),
    (["--sparsity", "-0.1"], ["--sparsity=-0.1 must lie in [0, 1)"]),
    (["--sparsity", "nan"], ["--sparsity=nan must lie in [0, 1)"]),
    (["--prune-start", "5"], ["--prune-start needs --sparsity"]),
    (["--prune-block", "4x4"], ["--prune-block needs --sparsity"]),
    (["--sparsity", "0.9", "--prune-start", "9", "--prune-end", "5"], ["--prune-start=9 is after --prune-end=5"]),
    (["--sparsity", "0.9", "--prune-end", "-1"], ["--prune-end=-1 must be 0 or a positive"]),
    (["--sparsity", "0.9", "--prune-block", "16"], ["--prune-block 16: give ROWSxCOLS"]),
    (["--sparsity", "0.9", "--prune-block", "\u00b2x1"], ["--prune-block \u00b2x1: give ROWSxCOLS"]),
    (["--sparsity", "0.9", "--prune-block", "32x\u00b2"], ["--prune-block 32x\u00b2: give ROWSxCOLS"]),
    (["--sparsity", "0.5", "--prune-start", "0", "--prune-end", "5000000000000000000"],
     ["--prune-end=5000000000000000000 must be", "at most 4611686018427387904"]),  # what a checkpoint holds
    (["--sparsity", "0.5", "--prune-start", "4611686018427387905"], ["--prune-start=4611686018427387905 must be"]),
    (["--sparsity", "0.9", "--prune-block", "64x1"], ["--prune-block 64x1:", "do not tile"]),
    (["--sparsity", "0.9"], ["--prune-block 32x1: frame0/rnn0/vh is 16 inputs x 48 outputs, which 32x1 blocks"]),
])
def test_bad_sparsity_flags(tmp_path, capsys, flags, words):
    from srnn.cli import train_main
    from srnn.errors import run_cli

    write_parts(tmp_path, n=2)
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = run_cli(train_main, TRAIN + flags)
    finally:
        os.chdir(cwd)
    clean_error(capsys, code, *words)
    assert not list(tmp_path.glob("*.h5")) and not (tmp_path / "costs.png").exists()


def test_sparsity_that_is_not_a_number_is_a_usage_error(capsys):
    from srnn.cli import train_parser

    with pytest.raises(SystemExit) as e:
        train_parser().parse_args(["--sparsity", "lots"])
    assert e.value.code == 2 and "--sparsity: invalid float value: 'lots'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sparse_file(tmp_path_factory):
    """A checkpoint of a pruned (untrained) sparse model."""
    from srnn.model import SampleRNN
    from srnn.prune import prune_to

    model = SampleRNN(ModelConfig(slowdim=16, dim=16, sparse_block=(16, 1)))
    prune_to(model, 0.5, (16, 1))
    path = str(tmp_path_factory.mktemp("sparse") / "s.h5")
    checkpoint.save(path, model)
    return path


def test_a_sparse_model_stripped_to_float16_reads_back(tmp_path):
    """The ready model's form (at dim 128): a model 80 % sparse, its weights in float16 and its masks in
    uint8, is smaller than two bytes a parameter, and still a valid checkpoint (the file-size check
    counts a mask's byte as one)."""
    from srnn.model import SampleRNN
    from srnn.prune import prune_to

    model = SampleRNN(ModelConfig(slowdim=128, dim=128, sparse_block=(32, 1)))
    prune_to(model, 0.8, (32, 1))
    full, half = str(tmp_path / "full.h5"), str(tmp_path / "half.h5")
    checkpoint.save(full, model)
    checkpoint.strip(full, half, dtype="float16")
    params = sum(int(np.prod(s)) for s in model.cfg.weight_shapes().values())
    assert os.path.getsize(half) < 2 * params  # the case in question
    got, want = checkpoint.load(half), checkpoint.load(full)
    assert got.config == want.config
    for name, w in want.weights.items():
        assert np.array_equal(got.weights[name], w.astype(np.float16).astype(w.dtype)), name


def _crafted(src, tmp_path, edit):
    path = tmp_path / "x.h5"
    path.write_bytes(open(src, "rb").read())
    with h5py.File(path, "r+") as f:
        edit(f)
    return str(path)


def _replace(name, value):
    def edit(f):
        del f[name]
        f.create_dataset(name, data=value)
    return edit


def _set_sparsity(value):
    def edit(f):
        data = json.loads(f.attrs["config"])
        data["sparsity"] = value
        f.attrs["config"] = json.dumps(data)
    return edit


@pytest.mark.parametrize("edit, words", [
    (_replace("weights/sample/h2/mask", np.ones((16, 8), np.uint8)), ["weight sample/h2/mask has shape (16, 8)"]),
    (_replace("weights/sample/h2/mask", np.full((16, 16), 2, np.uint8)), ["mask sample/h2/mask holds values other"]),
    (_replace("weights/sample/h2/mask", np.full((16, 16), 0.5, np.float32)), ["holds values other than 0 and 1"]),
    (_set_sparsity(0.9), ["its masks prune 0.500000", "says sparsity 0.900000"]),
    (_replace("weights/sample/h2/mask", np.eye(16, dtype=np.uint8)),
     ["sample/h2/mask is not made of whole 16x1 blocks"]),
    (_replace("weights/sample/h2/mask", np.zeros((16, 16), np.uint8)), ["sample/h2/mask prunes every input of some"]),
    (_set_sparsity(1.5), ["sparsity 1.5 must lie in [0, 1)"]),
    (lambda f: f.__delitem__("weights/sample/h2/mask"), ["lacks the weight sample/h2/mask"]),
])
def test_crafted_sparse_checkpoints_are_refused(sparse_file, tmp_path, edit, words):
    invalid(_crafted(sparse_file, tmp_path, edit), *words)


def test_crafted_schedule_is_refused(sparse_file, tmp_path):
    from srnn.model import SampleRNN
    from srnn.training import Steps

    ckpt = checkpoint.load(sparse_file)
    model = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, model)
    train = {"epoch": 0, "sparsity_target": 0.5, "prune_start": 10, "prune_end": 5, "sparsity_initial": 0.0}
    path = str(tmp_path / "sched.h5")
    checkpoint.save(path, model, Steps(model, xla=False).optimizer, train)
    with pytest.raises(SrnnError, match="pruning schedule that ends before it starts"):
        checkpoint.load(path)
