"""Image stacks: image names, memory-mapped reads by index, pickling, writes, bad input."""

from __future__ import annotations

import os
import pickle

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from cesped.io.stack import ImageSource, StackWriter, parse_image_name, stack_info, write_stack
from cesped.io.star import StarFile, read_star, write_star


def _star(names, path=None):
    p = pd.DataFrame({"rlnImageName": names, "rlnOpticsGroup": 1})
    o = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.5]})
    return StarFile(p, o, path)


def _images(n, ny=12, nx=10, seed=0):
    return np.random.default_rng(seed).normal(size=(n, ny, nx)).astype(np.float32)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("000012@stacks/a.mrcs", (11, "stacks/a.mrcs")),
        ("1@a.mrcs", (0, "a.mrcs")),
        ("7@/abs/p@th.mrcs", (6, "/abs/p@th.mrcs")),
        ("single.mrc", (0, "single.mrc")),
    ],
)
def test_parse_image_name(name, expected):
    assert parse_image_name(name) == expected


@pytest.mark.parametrize("bad", ["0@a.mrcs", "-3@a.mrcs", "x@a.mrcs", "5@", "", 12])
def test_parse_image_name_bad(bad):
    with pytest.raises(ValueError, match="rlnImageName"):
        parse_image_name(bad)


def test_write_stack_read_by_mrcfile(tmp_path):
    imgs = _images(5)
    write_stack(tmp_path / "s.mrcs", torch.from_numpy(imgs).double(), pixel_size=1.25)
    with mrcfile.open(tmp_path / "s.mrcs") as m:
        assert m.data.dtype == np.float32 and m.data.shape == (5, 12, 10)
        np.testing.assert_array_equal(m.data, imgs)
        assert m.voxel_size.x == pytest.approx(1.25) and m.voxel_size.y == pytest.approx(1.25)
        assert m.is_image_stack() and int(m.header.mode) == 2
    assert stack_info(tmp_path / "s.mrcs")[:3] == (5, 12, 10)


@pytest.mark.parametrize("bad", [np.zeros((0, 4, 4)), np.zeros(5), np.zeros((2, 2, 2, 2))])
def test_write_stack_bad_shape(tmp_path, bad):
    with pytest.raises(ValueError, match="write_stack"):
        write_stack(tmp_path / "s.mrcs", bad, 1.0)
    assert list(tmp_path.iterdir()) == []


def test_write_stack_bad_pixel_size(tmp_path):
    with pytest.raises(ValueError, match="pixel_size"):
        write_stack(tmp_path / "s.mrcs", np.zeros((1, 4, 4)), 0.0)


@pytest.mark.parametrize("via_maps", [True, False])
def test_image_source_multi_file_random_order(tmp_path, via_maps):
    a, b = _images(6, seed=1), _images(4, seed=2)
    write_stack(tmp_path / "stacks" / "a.mrcs", a, 1.5)
    write_stack(tmp_path / "stacks" / "b.mrcs", b, 1.5)
    names = [f"{i + 1:06d}@stacks/a.mrcs" for i in range(6)] + [f"{i + 1}@stacks/b.mrcs" for i in range(4)]
    order = np.random.default_rng(3).permutation(10)
    names = [names[i] for i in order]
    ref_all = np.concatenate([a, b])[order]
    write_star(tmp_path / "p.star", _star(names))
    src = ImageSource.from_star(read_star(tmp_path / "p.star"))
    assert len(src) == 10 and src.image_shape == (12, 10)
    idx = [9, 0, 3, 3, 7, -1]
    out = src.read(idx, via_maps=via_maps)
    assert out.dtype == np.float32 and out.shape == (6, 12, 10)
    np.testing.assert_array_equal(out, ref_all[idx])
    np.testing.assert_array_equal(src.read(slice(2, 8), via_maps=via_maps), ref_all[2:8])
    np.testing.assert_array_equal(src.read(np.arange(10), via_maps=via_maps), ref_all)
    assert src.read([], via_maps=via_maps).shape == (0, 12, 10)
    with pytest.raises(IndexError):
        src.read([10], via_maps=via_maps)


def test_single_stack_fast_path_matches(tmp_path):
    imgs = _images(20, seed=4)
    write_stack(tmp_path / "one.mrcs", imgs, 1.0)
    src = ImageSource.from_star(_star([f"{i + 1}@one.mrcs" for i in range(20)][::-1], tmp_path / "x.star"))
    np.testing.assert_array_equal(src.read(slice(None)), imgs[::-1])
    np.testing.assert_array_equal(src.read([5, 6, 7]), imgs[::-1][5:8])
    np.testing.assert_array_equal(src.read([19, 2, 11]), imgs[::-1][[19, 2, 11]])


def test_paths_relative_to_star_dir_or_root(tmp_path):
    imgs = _images(3, seed=5)
    write_stack(tmp_path / "data" / "s.mrcs", imgs, 1.0)
    names = ["2@s.mrcs", "1@s.mrcs"]
    write_star(tmp_path / "data" / "p.star", _star(names))
    src = ImageSource.from_star(read_star(tmp_path / "data" / "p.star"))
    np.testing.assert_array_equal(src.read([0, 1]), imgs[[1, 0]])
    # the same star moved elsewhere needs a root
    write_star(tmp_path / "other" / "p.star", _star(names))
    with pytest.raises(FileNotFoundError, match=r"s\.mrcs"):
        ImageSource.from_star(read_star(tmp_path / "other" / "p.star"))
    src = ImageSource.from_star(read_star(tmp_path / "other" / "p.star"), root=tmp_path / "data")
    np.testing.assert_array_equal(src.read([0]), imgs[[1]])


def test_pickle_round_trip_reopens_maps(tmp_path):
    imgs = _images(8, seed=6)
    write_stack(tmp_path / "s.mrcs", imgs, 1.0)
    src = ImageSource.from_star(_star([f"{i + 1}@s.mrcs" for i in range(8)], tmp_path / "p.star"))
    src.read([0])  # open a map, then pickle: the map must not travel
    blob = pickle.dumps(src)
    assert len(blob) < 10_000
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.read([7, 1]), imgs[[7, 1]])


def test_dataloader_workers_read_images(tmp_path):
    imgs = _images(12, seed=7)
    write_stack(tmp_path / "s.mrcs", imgs, 1.0)
    src = ImageSource.from_star(_star([f"{i + 1}@s.mrcs" for i in range(12)], tmp_path / "p.star"))
    src.read([0])  # the parent has a map open; forked workers must open their own

    class _DS(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            return torch.from_numpy(src.read([i])[0])

    loader = torch.utils.data.DataLoader(_DS(), batch_size=4, num_workers=2, multiprocessing_context="fork")
    out = torch.cat(list(loader)).numpy()
    np.testing.assert_array_equal(out, imgs)


def test_reads_do_not_load_whole_stack(tmp_path):
    # a 1.6 GB stack stored sparsely: reading two images touches only their pages
    n, ny, nx = 100_000, 64, 64
    write_stack(tmp_path / "big.mrcs", np.ones((1, ny, nx), np.float32) * 7, 1.0)
    with mrcfile.open(tmp_path / "big.mrcs", mode="r+") as m:
        m.header.nz = n
        m.header.mz = n
    with open(tmp_path / "big.mrcs", "r+b") as fh:
        fh.truncate(1024 + n * ny * nx * 4)
    src = ImageSource.from_star(_star(["1@big.mrcs", f"{n}@big.mrcs"], tmp_path / "p.star"))
    out = src.read([1, 0])
    assert (out[0] == 0).all() and (out[1] == 7).all()
    assert os.stat(tmp_path / "big.mrcs").st_blocks * 512 < 50_000_000  # still sparse


@pytest.mark.parametrize("via_maps", [True, False])
def test_integer_mode_stack_read_as_float32(tmp_path, via_maps):
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 20
    with mrcfile.new(tmp_path / "i.mrcs") as m:
        m.set_data(data)
        m.set_image_stack()
    src = ImageSource.from_star(_star(["3@i.mrcs", "1@i.mrcs"], tmp_path / "p.star"))
    out = src.read([0, 1], via_maps=via_maps)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data[[2, 0]].astype(np.float32))


def test_file_reads_of_a_stack_truncated_after_indexing(tmp_path):
    write_stack(tmp_path / "t.mrcs", _images(4), 1.0)
    src = ImageSource.from_star(_star([f"{i + 1}@t.mrcs" for i in range(4)], tmp_path / "p.star"))
    np.testing.assert_array_equal(src.read([3, 1], via_maps=False), _images(4)[[3, 1]])
    with open(tmp_path / "t.mrcs", "r+b") as fh:
        fh.truncate(os.path.getsize(tmp_path / "t.mrcs") - 100)
    with pytest.raises(ValueError, match=r"t\.mrcs: truncated stack \(image 4 onwards"):
        src.read([3], via_maps=False)
    np.testing.assert_array_equal(src.read([0, 1], via_maps=False), _images(4)[[0, 1]])


def test_index_past_end_names_row_file_and_index(tmp_path):
    write_stack(tmp_path / "s.mrcs", _images(3), 1.0)
    with pytest.raises(ValueError, match=r"row 1 .*'4@s\.mrcs'.*image 4 .*s\.mrcs has 3 images"):
        ImageSource.from_star(_star(["1@s.mrcs", "4@s.mrcs"], tmp_path / "p.star"))


def test_missing_stack(tmp_path):
    write_stack(tmp_path / "s.mrcs", _images(3), 1.0)
    with pytest.raises(FileNotFoundError, match=r"gone\.mrcs.*row 1"):
        ImageSource.from_star(_star(["1@s.mrcs", "2@gone.mrcs"], tmp_path / "p.star"))


def test_truncated_stack(tmp_path):
    write_stack(tmp_path / "t.mrcs", _images(4), 1.0)
    size = os.path.getsize(tmp_path / "t.mrcs")
    with open(tmp_path / "t.mrcs", "r+b") as fh:
        fh.truncate(size - 100)
    with pytest.raises(ValueError, match=r"t\.mrcs: truncated"):
        ImageSource.from_star(_star(["1@t.mrcs"], tmp_path / "p.star"))
    with pytest.raises(ValueError, match=r"t\.mrcs: truncated"):
        stack_info(tmp_path / "t.mrcs")


def test_not_an_mrc_file(tmp_path):
    (tmp_path / "junk.mrcs").write_bytes(b"hello" * 10)
    with pytest.raises(ValueError, match=r"junk\.mrcs"):
        ImageSource.from_star(_star(["1@junk.mrcs"], tmp_path / "p.star"))


def test_mixed_image_sizes(tmp_path):
    write_stack(tmp_path / "a.mrcs", _images(2, 8, 8), 1.0)
    write_stack(tmp_path / "b.mrcs", _images(2, 10, 10), 1.0)
    with pytest.raises(ValueError, match=r"b\.mrcs: images are 10x10"):
        ImageSource.from_star(_star(["1@a.mrcs", "1@b.mrcs"], tmp_path / "p.star"))


def test_missing_image_name_column(tmp_path):
    s = StarFile(
        pd.DataFrame({"rlnOpticsGroup": [1]}), pd.DataFrame({"rlnOpticsGroup": [1]}), tmp_path / "p.star"
    )
    with pytest.raises(ValueError, match=r"p\.star: data_particles lacks column\(s\) rlnImageName"):
        ImageSource.from_star(s)


def test_atomic_stack_write_keeps_old_file(tmp_path, monkeypatch):
    write_stack(tmp_path / "s.mrcs", _images(2), 1.0)
    before = (tmp_path / "s.mrcs").read_bytes()

    def boom(self):
        raise OSError("disk full")

    monkeypatch.setattr(mrcfile.mrcfile.MrcFile, "update_header_stats", boom)
    with pytest.raises(OSError, match="disk full"):
        write_stack(tmp_path / "s.mrcs", _images(5), 1.0)
    assert (tmp_path / "s.mrcs").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.mrcs"]


def test_stack_writer_batches(tmp_path):
    imgs = _images(10, seed=8)
    with StackWriter(tmp_path / "w.mrcs", n=10, shape=(12, 10), pixel_size=2.5) as w:
        w.write(4, imgs[4:10])
        w.write(0, torch.from_numpy(imgs[:4]))
        assert not (tmp_path / "w.mrcs").exists()  # only the temporary file so far
    with mrcfile.open(tmp_path / "w.mrcs") as m:
        np.testing.assert_array_equal(m.data, imgs)
        assert m.voxel_size.x == pytest.approx(2.5) and m.is_image_stack()
        assert float(m.header.dmax) == pytest.approx(imgs.max())
        assert float(m.header.dmin) == pytest.approx(imgs.min())
        assert float(m.header.dmean) == pytest.approx(imgs.mean(), abs=1e-6)
        assert float(m.header.rms) == pytest.approx(imgs.std(), rel=1e-5)


def test_stack_writer_incomplete_or_failing_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="image 3 .*never written"):
        with StackWriter(tmp_path / "w.mrcs", n=5, shape=(4, 4), pixel_size=1.0) as w:
            w.write(0, np.zeros((3, 4, 4)))
    with pytest.raises(RuntimeError, match="boom"):
        with StackWriter(tmp_path / "w.mrcs", n=2, shape=(4, 4), pixel_size=1.0) as w:
            w.write(0, np.zeros((2, 4, 4)))
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="outside"):
        with StackWriter(tmp_path / "w.mrcs", n=2, shape=(4, 4), pixel_size=1.0) as w:
            w.write(1, np.zeros((2, 4, 4)))
    assert list(tmp_path.iterdir()) == []
