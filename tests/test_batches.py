"""Truncated-BPTT feeding: splits, batches, chunks with real overlap, masks, lazy reading."""
import numpy as np
import pytest

import srnn.batches as batches
from conftest import tone, write_audio
from srnn.batches import Feeder, batch_chunks, read_prompts, split_files, stop_index
from srnn.config import ModelConfig
from srnn.errors import SrnnError
from srnn.quantize import Q_ZERO, linear_quantize

CFG = ModelConfig()  # the original's model: 8-sample big frame, 256 linear levels, 16 kHz


def make_parts(tmp_path, lengths, sr=16000):
    d = tmp_path / "x_parts"
    lines = []
    for i, n in enumerate(lengths):
        write_audio(str(d / f"p{i}.wav"), tone(100 + 37 * i, n / sr, sr), sr)
        lines.append(f"p{i}.wav\tnone\n")
    (d / "prompts.txt").write_text("".join(lines))
    return str(d)


@pytest.mark.parametrize("bf, q_levels", [(8, 256), (64, 64)])
def test_chunk_shapes_overlap_and_reset(rng, bf, q_levels):
    seqs = [rng.integers(0, q_levels, 1024), rng.integers(0, q_levels, 1024)]
    chunks = list(batch_chunks(seqs, cutlen=256, big_frame=bf, q_levels=q_levels))
    assert len(chunks) == 4
    assert [c.reset for c in chunks] == [True, False, False, False]
    for c in chunks:
        assert c.x.shape == (2, 256 + bf) and c.x.dtype == np.int32
        assert c.mask.shape == (2, 256)
    assert np.all(chunks[0].x[:, :bf] == q_levels // 2)  # the batch starts from a big frame of silence
    for prev, cur in zip(chunks, chunks[1:]):
        assert np.array_equal(cur.x[:, :bf], prev.x[:, -bf:])  # real overlap, not a silent prefix
    # the targets, chunk after chunk, are exactly the sequences
    targets = np.concatenate([c.x[:, bf:] for c in chunks], axis=1)
    assert np.array_equal(targets, np.stack(seqs))


def test_padding_is_masked(rng):
    seqs = [rng.integers(0, 256, 600), rng.integers(0, 256, 300)]
    chunks = list(batch_chunks(seqs, cutlen=256, big_frame=8, q_levels=256))
    assert len(chunks) == 3  # 600 -> padded to 768
    mask = np.concatenate([c.mask for c in chunks], axis=1)
    assert mask[0].sum() == 600 and mask[1].sum() == 300
    assert np.all(mask[1, :300] == 1) and np.all(mask[1, 300:] == 0)
    x = np.concatenate([c.x[:, 8:] for c in chunks], axis=1)
    assert np.all(x[1, 300:] == Q_ZERO)


def test_cutlen_must_be_multiple_of_big_frame():
    with pytest.raises(SrnnError, match="multiple of 8"):
        list(batch_chunks([np.zeros(100, np.int32)], cutlen=100, big_frame=8, q_levels=256))
    with pytest.raises(SrnnError, match="multiple of 16 .the top tier's frame"):
        list(batch_chunks([np.zeros(100, np.int32)], cutlen=264, big_frame=16, q_levels=256))


def test_prompts_with_a_byte_order_mark(tmp_path):
    (tmp_path / "prompts.txt").write_text("p0.wav\tnone\np1.wav\tnone\n", encoding="utf-8-sig")
    assert read_prompts(str(tmp_path)) == [str(tmp_path / "p0.wav"), str(tmp_path / "p1.wav")]


def test_split_boundaries():
    files = [f"p{i}" for i in range(10)]
    train, valid, test = split_files(files, 4, 6)
    assert (train, valid, test) == (files[:4], files[4:6], files[6:])
    train, valid, test = split_files(files, 0.8, 0.9)
    assert (len(train), len(valid), len(test)) == (8, 1, 1)
    assert split_files(files, 4, -1)[1] == files[4:9]  # negative counts from the end
    assert split_files(files, 1.0, 1.0)[0] == files
    with pytest.raises(SrnnError, match="--validstop"):
        split_files(files, 6, 4)
    with pytest.raises(SrnnError, match="has 10 lines"):
        split_files(files, 4, 20)
    with pytest.raises(SrnnError, match="fraction"):
        stop_index(1.5, 10, "--trainstop")


def test_read_prompts_missing_says_run_preprocess(tmp_path):
    with pytest.raises(SrnnError, match="preprocess.py"):
        read_prompts(str(tmp_path / "tiny_parts"))


def test_feeder_batches_and_remainder_warning(tmp_path):
    d = make_parts(tmp_path, [4000] * 5)
    warnings = []
    feed = Feeder(read_prompts(d), batchsize=2, cutlen=512, cfg=CFG, warn=warnings.append)
    assert feed.n_batches == 2
    assert len(warnings) == 1 and "1 training file" in warnings[0]
    b = feed.batches()
    assert [len(x) for x in b] == [2, 2]
    assert feed.count_chunks(b) == len(list(feed.chunks(b))) == 2 * 8  # 4000 -> 4096 = 8 chunks
    # seeded shuffles are reproducible and differ between seeds
    assert feed.batches(seed=[1, 0]) == feed.batches(seed=[1, 0])
    assert feed.batches(seed=[1, 0]) != feed.batches(seed=[2, 0])


def test_chunks_hold_the_quantised_files(tmp_path):
    d = make_parts(tmp_path, [2048, 2048])
    files = read_prompts(d)
    feed = Feeder(files, batchsize=2, cutlen=512, cfg=CFG)
    x = np.concatenate([c.x[:, 8:] for c in feed.chunks(feed.batches())], axis=1)
    import soundfile as sf
    for b, f in enumerate(files):
        assert np.array_equal(x[b], linear_quantize(sf.read(f)[0]))


def test_split_smaller_than_a_batch_is_an_error(tmp_path):
    d = make_parts(tmp_path, [1000] * 3)
    with pytest.raises(SrnnError, match="validation split has 1 file"):
        Feeder(read_prompts(d)[2:], batchsize=2, cutlen=256, cfg=CFG, split="validation")


def test_files_are_read_lazily_batch_by_batch(tmp_path, monkeypatch):
    d = make_parts(tmp_path, [1024] * 6)
    opened = []
    real = batches.sf.read
    monkeypatch.setattr(batches.sf, "read", lambda path, *a, **k: (opened.append(path), real(path, *a, **k))[1])
    feed = Feeder(read_prompts(d), batchsize=2, cutlen=512, cfg=CFG)
    it = feed.chunks(feed.batches())
    assert opened == []  # nothing read up front
    next(it)
    assert len(opened) == 2  # the first batch only
    next(it)
    assert len(opened) == 2  # its second chunk comes from memory
    next(it)
    assert len(opened) == 4  # the next batch is read when it is needed


def test_wrong_rate_or_channels_is_an_error(tmp_path):
    d = tmp_path / "y_parts"
    write_audio(str(d / "p0.wav"), tone(100, 1, 8000), 8000)
    with pytest.raises(SrnnError, match="8000 Hz"):
        batches.load_part(str(d / "p0.wav"), CFG)
    write_audio(str(d / "p1.wav"), tone(100, 1, 16000, channels=2), 16000)
    with pytest.raises(SrnnError, match="2 channel"):
        batches.load_part(str(d / "p1.wav"), CFG)
    with pytest.raises(SrnnError, match="missing"):
        batches.load_part(str(d / "p9.wav"), CFG)


def test_prefetch_reads_at_most_one_batch_ahead_and_keeps_order(tmp_path, monkeypatch):
    d = make_parts(tmp_path, [700] * 8)
    feed = Feeder(read_prompts(d), batchsize=2, cutlen=256, cfg=CFG)
    loaded = []
    real = feed.load
    monkeypatch.setattr(feed, "load", lambda batch: (loaded.append(batch), real(batch))[1])
    batches = feed.batches(seed=[0, 1])
    seen = []
    for b, seqs in feed.loaded(batches):
        assert len(loaded) <= b + 2  # this batch and at most the next one
        seen.append(b)
        assert [len(s) for s in seqs] == [700, 700]
    assert seen == [0, 1, 2, 3] and loaded == batches
    # the same parts, in the same order, as without prefetching
    plain = [s for _, seqs in feed.loaded(batches, prefetch=False) for s in seqs]
    fetched = [s for _, seqs in feed.loaded(batches) for s in seqs]
    assert all(np.array_equal(a, b) for a, b in zip(plain, fetched))
    assert [b for b, _ in feed.loaded(batches, start=2)] == [2, 3]


def test_prefetch_passes_reading_errors_through(tmp_path):
    d = make_parts(tmp_path, [700] * 4)
    feed = Feeder(read_prompts(d), batchsize=2, cutlen=256, cfg=CFG)
    import os
    os.unlink(os.path.join(d, "p3.wav"))  # a part that vanishes while training runs
    it = feed.loaded(feed.batches())
    next(it)
    with pytest.raises(SrnnError, match="p3.wav"):
        next(it)


def test_every_part_is_checked_before_training_starts(tmp_path):
    d = make_parts(tmp_path, [700] * 4)
    write_audio(str(tmp_path / "x_parts" / "p3.wav"), tone(100, 0.1, 8000), 8000)
    with pytest.raises(SrnnError, match="p3.wav is 8000 Hz"):
        Feeder(read_prompts(d), batchsize=2, cutlen=256, cfg=CFG)
    (tmp_path / "x_parts" / "p3.wav").unlink()
    with pytest.raises(SrnnError, match="p3.wav .*missing"):
        Feeder(read_prompts(d), batchsize=2, cutlen=256, cfg=CFG)


def test_a_whole_feeder_keeps_the_last_smaller_batch(tmp_path):
    d = make_parts(tmp_path, [700] * 5)
    warnings = []
    feed = Feeder(read_prompts(d), batchsize=2, cutlen=256, cfg=CFG,
                  split="test", warn=warnings.append, whole=True)
    assert [len(b) for b in feed.batches()] == [2, 2, 1] and warnings == []
    chunks = list(feed.chunks(feed.batches()))
    assert chunks[-1].x.shape == (1, 256 + 8)
