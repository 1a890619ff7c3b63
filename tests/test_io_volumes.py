"""open_volume / write_tiff: every format reads back what was written, lazily, and bad input fails in one line."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from clarity_fast.errors import InputError
from clarity_fast.io import volumes
from clarity_fast.io.volumes import open_volume, write_tiff

DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64]


def volume(shape: tuple[int, ...] = (5, 6, 7), dtype: type = np.uint16, seed: int = 0) -> np.ndarray:
    """Distinct values per voxel, so a wrong plane or axis order shows."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 200).astype(dtype)


@pytest.fixture
def zarr():
    """Zarr is an optional dependency (the dask extra); its tests skip without it."""
    return pytest.importorskip("zarr")


def read_all(path: Path, **kwargs: int) -> np.ndarray:
    with open_volume(path, **kwargs) as reader:
        return reader.read_slab(0, reader.shape[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiff_round_trip_every_dtype(tmp_path: Path, dtype: type) -> None:
    data = volume(dtype=dtype)
    write_tiff(tmp_path / "v.tif", data)
    with open_volume(tmp_path / "v.tif") as reader:
        assert reader.shape == data.shape
        assert reader.dtype == data.dtype
        assert reader.voxel_size is None
        slab = reader.read_slab(1, 4)
    assert type(slab) is np.ndarray
    np.testing.assert_array_equal(slab, data[1:4])


def test_uncompressed_tiff_is_memory_mapped_and_slab_is_a_copy(tmp_path: Path) -> None:
    data = volume()
    write_tiff(tmp_path / "v.tif", data)
    with open_volume(tmp_path / "v.tif") as reader:
        assert isinstance(reader._array, np.memmap)
        slab = reader.read_slab(2, 3)
    assert not isinstance(slab, np.memmap) and slab.flags.writeable and slab.flags.owndata
    np.testing.assert_array_equal(slab, data[2:3])


def test_zlib_tiff_reads_page_by_page(tmp_path: Path) -> None:
    data = volume(dtype=np.float32)
    write_tiff(tmp_path / "v.tif", data, compression="zlib")
    with tifffile.TiffFile(tmp_path / "v.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    with open_volume(tmp_path / "v.tif") as reader:
        assert type(reader).__name__ == "_TiffPageVolume"
        np.testing.assert_array_equal(reader.read_slab(0, 5), data)


def test_slab_of_large_zlib_tiff_decodes_only_its_planes(tmp_path: Path) -> None:
    data = volume((40, 128, 128), np.uint16, seed=3)
    write_tiff(tmp_path / "v.tif", data, compression="zlib")
    with open_volume(tmp_path / "v.tif") as reader:
        slabs = [reader.read_slab(z, min(z + 7, 40)) for z in range(0, 40, 7)]
        np.testing.assert_array_equal(np.concatenate(slabs), data)
        tracemalloc.start()
        try:
            slab = reader.read_slab(20, 22)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    np.testing.assert_array_equal(slab, data[20:22])
    assert peak < data.nbytes / 5


def test_tiled_volumetric_tiff_falls_back_to_zarr(tmp_path: Path, zarr) -> None:
    data = volume((8, 32, 32))
    tifffile.imwrite(tmp_path / "v.tif", data, tile=(4, 16, 16), compression="zlib", photometric="minisblack")
    with open_volume(tmp_path / "v.tif") as reader:
        assert reader.shape == (8, 32, 32)
        np.testing.assert_array_equal(reader.read_slab(3, 6), data[3:6])


def test_2d_tiff_is_depth_one(tmp_path: Path) -> None:
    plane = volume((6, 7))
    tifffile.imwrite(tmp_path / "p.tif", plane, compression="zlib")
    with open_volume(tmp_path / "p.tif") as reader:
        assert reader.shape == (1, 6, 7)
        np.testing.assert_array_equal(reader.read_slab(0, 1), plane[np.newaxis])
    write_tiff(tmp_path / "w.tif", plane, voxel_size=(1.0, 0.5, 0.5))
    with open_volume(tmp_path / "w.tif") as reader:
        assert reader.shape == (1, 6, 7)
        assert reader.voxel_size == pytest.approx((1.0, 0.5, 0.5))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64, np.int16])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_voxel_size_round_trip(tmp_path: Path, dtype: type, compression: str | None) -> None:
    data = volume(dtype=dtype)
    write_tiff(tmp_path / "v.tif", data, voxel_size=(5.0, 2.0, 0.3), compression=compression)
    with open_volume(tmp_path / "v.tif") as reader:
        assert reader.voxel_size == pytest.approx((5.0, 2.0, 0.3), rel=1e-9)
        np.testing.assert_array_equal(reader.read_slab(0, 5), data)


def test_imagej_and_ome_metadata_from_other_writers(tmp_path: Path) -> None:
    data = volume()
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(2.0, 4.0),
        metadata={"axes": "ZYX", "spacing": 3.0, "unit": "micron"},
    )
    tifffile.imwrite(
        tmp_path / "ome.ome.tif",
        data,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 200.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 0.2,
            "PhysicalSizeZ": 1.5,
        },
    )
    tifffile.imwrite(tmp_path / "nounit.tif", data, imagej=True, metadata={"axes": "ZYX", "spacing": 3.0})
    with open_volume(tmp_path / "ij.tif") as reader:
        assert reader.voxel_size == pytest.approx((3.0, 0.25, 0.5))
    with open_volume(tmp_path / "ome.ome.tif") as reader:
        assert reader.voxel_size == pytest.approx((1.5, 0.2, 0.2))
    with open_volume(tmp_path / "nounit.tif") as reader:
        assert reader.voxel_size is None


@pytest.mark.parametrize("dtype", [np.uint16, np.float64])
def test_streaming_write_from_generator(tmp_path: Path, dtype: type) -> None:
    data = volume((9, 6, 7), dtype)
    consumed = []

    def slabs():
        for z in range(0, 9, 4):
            consumed.append(z)
            yield data[z : z + 4]

    write_tiff(
        tmp_path / "v.tif", slabs(), shape=data.shape, dtype=dtype, voxel_size=(2.0, 1.0, 1.0), compression="zlib"
    )
    assert consumed == [0, 4, 8]
    with open_volume(tmp_path / "v.tif") as reader:
        assert reader.voxel_size == pytest.approx((2.0, 1.0, 1.0))
        np.testing.assert_array_equal(reader.read_slab(0, 9), data)
    write_tiff(tmp_path / "planes.tif", iter(data), shape=data.shape, dtype=dtype)
    np.testing.assert_array_equal(read_all(tmp_path / "planes.tif"), data)


def test_streaming_write_holds_one_block_at_a_time(tmp_path: Path) -> None:
    plane = volume((256, 256), np.uint16)
    planes = 40
    tracemalloc.start()
    try:
        write_tiff(tmp_path / "v.tif", (plane + z for z in range(planes)), shape=(planes, 256, 256), dtype=np.uint16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < planes * plane.nbytes / 5
    with open_volume(tmp_path / "v.tif") as reader:
        np.testing.assert_array_equal(reader.read_slab(39, 40)[0], plane + 39)


def test_large_volumes_become_ome_bigtiff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(volumes, "_CLASSIC_TIFF_LIMIT", 100)
    data = volume()
    write_tiff(tmp_path / "v.tif", data, voxel_size=(4.0, 1.5, 1.5), compression="zlib")
    with tifffile.TiffFile(tmp_path / "v.tif") as tif:
        assert tif.is_bigtiff and tif.is_ome and not tif.is_imagej
    with open_volume(tmp_path / "v.tif") as reader:
        assert reader.voxel_size == pytest.approx((4.0, 1.5, 1.5))
        np.testing.assert_array_equal(reader.read_slab(0, 5), data)


@pytest.mark.parametrize("planes", [4, 6])
def test_streaming_write_with_wrong_plane_count_leaves_no_file(tmp_path: Path, planes: int) -> None:
    data = volume((planes, 6, 7))
    with pytest.raises(InputError, match="planes"):
        write_tiff(tmp_path / "v.tif", iter(data), shape=(5, 6, 7), dtype=np.uint16)
    assert list(tmp_path.iterdir()) == []


def test_write_tiff_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="compression"):
        write_tiff(tmp_path / "v.tif", volume(), compression="lzw")
    with pytest.raises(InputError, match="shape and dtype"):
        write_tiff(tmp_path / "v.tif", iter(volume()))
    with pytest.raises(InputError, match="block 0"):
        write_tiff(tmp_path / "v.tif", iter(volume(dtype=np.uint8)), shape=(5, 6, 7), dtype=np.uint16)
    with pytest.raises(InputError, match="voxel size"):
        write_tiff(tmp_path / "v.tif", volume(), voxel_size=(1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="bool"):
        write_tiff(tmp_path / "v.tif", np.zeros((2, 3, 4), bool))
    assert list(tmp_path.iterdir()) == []


def test_folder_of_planes_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "planes"
    folder.mkdir()
    for k in range(1, 13):
        tifffile.imwrite(folder / f"plane_{k}.tif", np.full((4, 5), k, np.uint16))
    (folder / "notes.txt").write_text("not a plane")
    (folder / ".plane_99.tif").write_bytes(b"macOS resource fork")
    with open_volume(folder) as reader:
        assert reader.shape == (12, 4, 5)
        slab = reader.read_slab(0, 12)
        np.testing.assert_array_equal(slab[:, 0, 0], np.arange(1, 13))
        np.testing.assert_array_equal(reader.read_slab(9, 11)[:, 2, 3], [10, 11])


def test_folder_plane_that_differs_fails_when_read(tmp_path: Path) -> None:
    for k in range(3):
        tifffile.imwrite(tmp_path / f"p{k}.tif", np.zeros((4, 5), np.uint16))
    tifffile.imwrite(tmp_path / "p3.tif", np.zeros((4, 6), np.uint16))
    with open_volume(tmp_path) as reader:
        assert reader.shape == (4, 4, 5)
        reader.read_slab(0, 3)
        with pytest.raises(InputError, match=r"p3\.tif: plane of shape \(4, 6\)"):
            reader.read_slab(2, 4)


@pytest.mark.parametrize("first", [(4, 5), (1, 4, 5)])
def test_folder_planes_with_and_without_a_singleton_axis_mix(tmp_path: Path, first) -> None:
    """Writers differ in whether a plane is (Y, X) or (1, Y, X); the pixels are the same."""
    tifffile.imwrite(tmp_path / "p0.tif", np.full(first, 7, np.uint16))
    other = (1, 4, 5) if len(first) == 2 else (4, 5)
    tifffile.imwrite(tmp_path / "p1.tif", np.arange(20, dtype=np.uint16).reshape(other))
    with open_volume(tmp_path) as reader:
        assert reader.shape == (2, 4, 5)
        slab = reader.read_slab(0, 2)
    assert np.all(slab[0] == 7) and np.array_equal(slab[1], np.arange(20).reshape(4, 5))


@pytest.mark.parametrize(
    ("name", "series"),
    [("12-34-56_UltraII_C{k:02d}_xyz-Table Z{z:04d}.ome.tif", "C00, C01"), ("12-34-56_Ultra II[00 x {k:02d}]_C00_xyz-Table Z{z:04d}.ome.tif", "tile 00, tile 01")],
)
def test_a_folder_of_two_channels_or_tiles_planes_is_refused_not_stacked(tmp_path: Path, name: str, series: str) -> None:
    """UltraMicroscope names: two channels' (or tiles') planes in one folder would read as one volume twice as deep."""
    for k in range(2):
        for z in range(3):
            tifffile.imwrite(tmp_path / name.format(k=k, z=z), np.zeros((4, 5), np.uint16))
    with pytest.raises(InputError, match=f"repeat the same numbers for each of {series}"):
        open_volume(tmp_path)


@pytest.mark.parametrize(
    "names",
    [[f"{c}_z{z:04d}.tif" for c in ("GFP", "RFP") for z in range(3)], [f"img_C00_Z{z:04d}.tif" for z in range(3)] + ["img_C00_MAX.tif"]],
)
def test_a_folder_of_planes_named_in_several_ways_is_refused_not_stacked(tmp_path: Path, names) -> None:
    """Channels told apart by a word, or a projection beside the planes, would read as one deeper volume."""
    for name in names:
        tifffile.imwrite(tmp_path / name, np.zeros((4, 5), np.uint16))
    with pytest.raises(InputError, match=r"named in 2 ways \("):
        open_volume(tmp_path)


@pytest.mark.parametrize(
    "names",
    [
        [f"plane_{z:04d}_t{z // 4}m{z % 4:02d}s.tif" for z in range(12)],  # a time stamp that changes with the plane
        [f"s{z // 2}_{z}.tif" for z in range(8)],  # two numbers that both follow the plane
        [f"section_{s:03d}_{k:02d}.tif" for s in range(1, 4) for k in range(1, 4)],  # serial two-photon: section x optical layer
        [f"StitchedImage_Z{s:03d}_L{k:03d}.tif" for s in range(1, 4) for k in range(1, 3)],  # TissueCyte, likewise
        [f"z_{d // 2}.{5 * (d % 2)}um.tif" for d in range(8)],  # depths in µm: integer and fraction
    ],
)
def test_names_with_numbers_that_follow_the_plane_are_one_series(tmp_path: Path, names) -> None:
    for k, name in enumerate(names):
        tifffile.imwrite(tmp_path / name, np.full((4, 5), k, np.uint16))
    with open_volume(tmp_path) as reader:
        assert reader.shape == (len(names), 4, 5)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no .tif/.tiff planes"):
        open_volume(tmp_path)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_round_trip(tmp_path: Path, zarr, zarr_format: int) -> None:
    data = volume((6, 7, 8), np.int16)
    array = zarr.open_array(
        tmp_path / "v.zarr", mode="w", shape=data.shape, dtype=data.dtype, chunks=(2, 7, 8), zarr_format=zarr_format
    )
    array[:] = data
    with open_volume(tmp_path / "v.zarr") as reader:
        assert (reader.shape, reader.dtype, reader.voxel_size) == (data.shape, data.dtype, None)
        np.testing.assert_array_equal(reader.read_slab(1, 5), data[1:5])


@pytest.mark.parametrize(("zarr_format", "channel_axis"), [(2, "c"), (3, "c"), (2, "channel"), (3, "wavelength")])
def test_ome_zarr_takes_first_level_and_scale(tmp_path: Path, zarr, zarr_format: int, channel_axis: str) -> None:
    """The channel axis by its name or its NGFF type (a channel axis named otherwise read as planes)."""
    data = volume((2, 6, 7, 8), np.uint16)
    group = zarr.open_group(tmp_path / "brain.ome.zarr", mode="w", zarr_format=zarr_format)
    group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=(1, 3, 7, 8))[:] = data
    group.create_array("1", shape=(2, 3, 3, 4), dtype=data.dtype)[:] = 0
    axes = [
        {"name": channel_axis, "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "nanometer"},
    ]
    datasets = [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 5.0, 2.0, 2000.0]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 10.0, 4.0, 4.0]}]},
    ]
    multiscales = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    if zarr_format == 2:
        group.attrs["multiscales"] = multiscales
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    with pytest.raises(InputError, match="--channel"):
        open_volume(tmp_path / "brain.ome.zarr")
    with open_volume(tmp_path / "brain.ome.zarr", channel=1) as reader:
        assert reader.shape == (6, 7, 8)
        assert reader.voxel_size == pytest.approx((5.0, 2.0, 2.0))
        np.testing.assert_array_equal(reader.read_slab(0, 6), data[1])
    for axis in axes:  # NGFF lets units out: a scale in pixels, say, is no voxel size
        axis.pop("unit", None)
    if zarr_format == 2:
        group.attrs["multiscales"] = multiscales
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    with open_volume(tmp_path / "brain.ome.zarr", channel=1) as reader:
        assert reader.voxel_size is None


def test_zarr_without_the_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "v.zarr").mkdir()
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(InputError, match=r"reading Zarr needs zarr: pip install 'clarity-fast\[dask\]'"):
        open_volume(tmp_path / "v.zarr")


def test_zarr_group_without_multiscales(tmp_path: Path, zarr) -> None:
    zarr.open_group(tmp_path / "g.zarr", mode="w")
    with pytest.raises(InputError, match="multiscales"):
        open_volume(tmp_path / "g.zarr")


def test_npy_round_trip_and_channels(tmp_path: Path) -> None:
    data = volume((3, 4, 5, 6), np.float32)
    np.save(tmp_path / "czyx.npy", data)
    np.save(tmp_path / "zyx.npy", data[0])
    np.testing.assert_array_equal(read_all(tmp_path / "zyx.npy"), data[0])
    np.testing.assert_array_equal(read_all(tmp_path / "czyx.npy", channel=np.int64(2)), data[2])
    with pytest.raises(InputError, match=r"czyx\.npy: has 3 channels \(axes CZYX\); choose one with --channel"):
        open_volume(tmp_path / "czyx.npy")
    with pytest.raises(InputError, match="channel 3 is out of range"):
        open_volume(tmp_path / "czyx.npy", channel=3)


@pytest.mark.parametrize("shape, axis", [((8, 2, 16, 16), 1), ((8, 16, 16, 3), 3)])
def test_an_unnamed_array_whose_channels_look_elsewhere_is_read_with_a_warning(tmp_path, caplog, shape, axis) -> None:
    np.save(tmp_path / "v.npy", volume(shape))
    with caplog.at_level("WARNING", logger="clarity_fast"), open_volume(tmp_path / "v.npy", channel=0):
        pass
    assert f"axis {axis} has {shape[axis]} entries against the channel axis's 8 and looks like the channels" in caplog.text
    caplog.clear()
    np.save(tmp_path / "c.npy", volume((2, 8, 16, 16)))  # channels first, as assumed: no warning
    with caplog.at_level("WARNING", logger="clarity_fast"), open_volume(tmp_path / "c.npy", channel=0):
        pass
    assert not caplog.text


def test_a_tiff_of_several_series_reads_the_largest_with_a_warning(tmp_path, caplog) -> None:
    data = volume((6, 20, 24))
    with tifffile.TiffWriter(tmp_path / "v.tif") as tif:
        tif.write(volume((8, 8), seed=1))  # an overview before the volume
        tif.write(data)
    with caplog.at_level("WARNING", logger="clarity_fast"):
        np.testing.assert_array_equal(read_all(tmp_path / "v.tif"), data)
    assert "holds 2 image series ((8, 8), (6, 20, 24)); reading series 1, the largest" in caplog.text
    with tifffile.TiffWriter(tmp_path / "v.ome.tif", ome=True) as tif:  # the voxel size is the volume's own, too
        tif.write(volume((2, 8, 8)), metadata=dict(axes="ZYX", PhysicalSizeZ=40.0, PhysicalSizeY=50.0, PhysicalSizeX=50.0))
        tif.write(data, metadata=dict(axes="ZYX", PhysicalSizeZ=4.0, PhysicalSizeY=2.0, PhysicalSizeX=2.0))
    with open_volume(tmp_path / "v.ome.tif") as reader:
        assert reader.shape == data.shape and reader.voxel_size == (4.0, 2.0, 2.0)


def test_czyx_tiff_needs_a_channel(tmp_path: Path) -> None:
    data = volume((4, 3, 5, 6), np.uint16)  # ImageJ order: z, c, y, x
    tifffile.imwrite(tmp_path / "v.tif", data, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(InputError, match="has 3 channels .*--channel"):
        open_volume(tmp_path / "v.tif")
    np.testing.assert_array_equal(read_all(tmp_path / "v.tif", channel=1), data[:, 1])
    tifffile.imwrite(tmp_path / "z.tif", data, imagej=True, metadata={"axes": "ZCYX"}, compression="zlib")
    np.testing.assert_array_equal(read_all(tmp_path / "z.tif", channel=2), data[:, 2])


def test_rgb_tiff_needs_a_channel(tmp_path: Path) -> None:
    rgb = volume((5, 6, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    with pytest.raises(InputError, match="rgb.tif: has 3 channels .*--channel"):
        open_volume(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(read_all(tmp_path / "rgb.tif", channel=0), rgb[np.newaxis, :, :, 0])


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        open_volume(tmp_path / "nope.tif")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "v.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"v\.png: unsupported format; expected .*\.tif.*\.zarr.*\.npy"):
        open_volume(tmp_path / "v.png")


def test_text_file_named_tif(tmp_path: Path) -> None:
    (tmp_path / "v.tif").write_text("hello, not an image")
    with pytest.raises(InputError, match=r"v\.tif: not a readable TIFF \(.*\)"):
        open_volume(tmp_path / "v.tif")


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("keep", [0.02, 0.5, 0.9])
def test_truncated_tiff(tmp_path: Path, compression: str | None, keep: float) -> None:
    write_tiff(tmp_path / "full.tif", volume((10, 32, 32), seed=1), compression=compression)
    content = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(InputError, match=r"cut\.tif: not a readable TIFF"):
        with open_volume(tmp_path / "cut.tif") as reader:
            reader.read_slab(0, reader.shape[0])


def test_truncated_in_last_plane_fails_only_when_that_plane_is_read(tmp_path: Path) -> None:
    write_tiff(tmp_path / "full.tif", volume((10, 32, 32), seed=1), compression="zlib")
    content = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(content[:-100])
    with open_volume(tmp_path / "cut.tif") as reader:
        reader.read_slab(0, 9)
        with pytest.raises(InputError, match=r"cut\.tif: not a readable TIFF at plane 9"):
            reader.read_slab(8, 10)


@pytest.mark.parametrize(("z0", "z1"), [(-1, 2), (2, 2), (3, 1), (0, 6)])
def test_bad_slab_bounds(tmp_path: Path, z0: int, z1: int) -> None:
    np.save(tmp_path / "v.npy", volume())
    with open_volume(tmp_path / "v.npy") as reader, pytest.raises(InputError, match=r"slab .* outside"):
        reader.read_slab(z0, z1)


@pytest.mark.parametrize("dtype", [bool, np.complex64])
def test_unsupported_dtype(tmp_path: Path, dtype: type) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), dtype))
    with pytest.raises(InputError, match="unsupported data type"):
        open_volume(tmp_path / "v.npy")


def test_empty_and_too_many_dimensions(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 3, 4), np.uint16))
    np.save(tmp_path / "6d.npy", np.zeros((2, 1, 1, 2, 3, 4), np.uint16))
    np.save(tmp_path / "tczyx.npy", np.zeros((2, 1, 2, 3, 4), np.uint16))
    with pytest.raises(InputError, match="empty volume"):
        open_volume(tmp_path / "empty.npy")
    with pytest.raises(InputError, match="6D array"):
        open_volume(tmp_path / "6d.npy")
    with pytest.raises(InputError, match="must be 2D or 3D"):
        open_volume(tmp_path / "tczyx.npy")


def test_real_crop_reads_lazily(shared_data: Path) -> None:
    path = shared_data / "cellfinder_crop" / "signal.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open_volume(path) as reader:
        assert (reader.shape, reader.dtype, reader.voxel_size) == ((30, 510, 667), np.uint16, None)
        slab = reader.read_slab(10, 12)
    np.testing.assert_array_equal(slab, tifffile.imread(path, key=[10, 11]))


def test_open_array_wraps_memory():
    from clarity_fast.io.volumes import open_array

    plane = np.arange(12, dtype=np.uint16).reshape(3, 4)
    with open_array(plane, voxel_size=(1.0, 2.0, 2.0)) as vol:
        assert vol.shape == (1, 3, 4) and vol.voxel_size == (1.0, 2.0, 2.0)
        assert np.array_equal(vol.read_slab(0, 1)[0], plane)
    with pytest.raises(InputError):
        open_array(np.zeros((2, 2, 3, 4)))


def test_an_imagej_stack_saved_without_axes_is_told_how_to_fix_it(tmp_path: Path) -> None:
    """tifffile records an ImageJ stack written without axes as 32 channels: the message says what to do."""
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((32, 8, 8), np.uint16), imagej=True, metadata={"spacing": 4, "unit": "um"})
    with pytest.raises(InputError, match="has 32 channels .*save it again with axes ZYX"):
        open_volume(tmp_path / "v.tif")


def test_imagej_per_axis_units_and_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Fiji writes zunit / yunit where they differ from x's unit, and leaves the spacing out where it is 1."""
    data = volume()
    tifffile.imwrite(tmp_path / "zunit.tif", data, imagej=True, resolution=(0.5, 0.5),
                     metadata={"axes": "ZYX", "unit": "micron", "zunit": "nm", "spacing": 4000})
    tifffile.imwrite(tmp_path / "nospacing.tif", data, imagej=True, resolution=(0.5, 0.5), metadata={"axes": "ZYX", "unit": "micron"})
    tifffile.imwrite(tmp_path / "cm.tif", data, imagej=True, resolution=(5000.0, 5000.0), metadata={"axes": "ZYX", "unit": "cm", "spacing": 0.0004})
    with open_volume(tmp_path / "zunit.tif") as reader:
        assert reader.voxel_size == pytest.approx((4.0, 2.0, 2.0))
    with open_volume(tmp_path / "cm.tif") as reader:
        assert reader.voxel_size == pytest.approx((4.0, 2.0, 2.0))
    assert not caplog.text
    with caplog.at_level("WARNING", logger="clarity_fast"):
        with open_volume(tmp_path / "nospacing.tif") as reader:
            assert reader.voxel_size == pytest.approx((1.0, 2.0, 2.0))
    assert "records no z spacing, so ImageJ's default of 1 is taken (voxel size 1, 2, 2 µm)" in caplog.text


def _ome_image(i: int, *, size_um: float, spacing_um: float, tiff_data: str) -> str:
    return (f'<Image ID="Image:{i}" Name="pos{i}"><Pixels ID="Pixels:{i}" DimensionOrder="XYZCT" Type="uint16" SizeX="8" SizeY="7" '
            f'SizeZ="6" SizeC="1" SizeT="1" PhysicalSizeX="{size_um}" PhysicalSizeY="{size_um}" PhysicalSizeZ="{spacing_um}">'
            f'<Channel ID="Channel:{i}:0" SamplesPerPixel="1"/>{tiff_data}</Pixels></Image>')


def test_a_multi_file_ome_tiff_reads_its_own_image_and_voxel_size(tmp_path: Path) -> None:
    """Two positions in two files, each file's OME-XML listing both: each file reads its own pixels and sizes, also
    when the other file is missing (tifffile then leaves that image out of its series)."""
    uuids = ["urn:uuid:00000000-0000-0000-0000-000000000000", "urn:uuid:11111111-1111-1111-1111-111111111111"]
    data = [volume((6, 7, 8), seed=1), volume((6, 7, 8), seed=2)]
    for k in (0, 1):
        images = [_ome_image(i, size_um=(0.5, 2.0)[i], spacing_um=(10.0, 4.0)[i],
                             tiff_data=f'<TiffData IFD="0" PlaneCount="6"><UUID FileName="pos{i}.ome.tif">{uuids[i]}</UUID></TiffData>')
                  for i in (0, 1)]
        xml = f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{uuids[k]}">{"".join(images)}</OME>'
        with tifffile.TiffWriter(tmp_path / f"pos{k}.ome.tif") as writer:
            for z in range(6):
                writer.write(data[k][z], photometric="minisblack", description=xml if z == 0 else None, metadata=None, contiguous=False)
    with open_volume(tmp_path / "pos1.ome.tif") as reader:
        assert reader.voxel_size == pytest.approx((4.0, 2.0, 2.0))
        np.testing.assert_array_equal(reader.read_slab(0, 6), data[1])
    (tmp_path / "pos0.ome.tif").unlink()
    with open_volume(tmp_path / "pos1.ome.tif") as reader:
        assert reader.voxel_size == pytest.approx((4.0, 2.0, 2.0))
        np.testing.assert_array_equal(reader.read_slab(0, 6), data[1])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_zarr_arrays_own_axis_names_are_used(tmp_path: Path, zarr, zarr_format: int) -> None:
    data = volume((6, 2, 7, 8), np.uint16)
    names = ["z", "c", "y", "x"]
    if zarr_format == 3:
        array = zarr.create_array(tmp_path / "v.zarr", shape=data.shape, dtype=data.dtype, zarr_format=3, dimension_names=names)
    else:
        array = zarr.create_array(tmp_path / "v.zarr", shape=data.shape, dtype=data.dtype, zarr_format=2)
        array.attrs["_ARRAY_DIMENSIONS"] = names  # xarray's convention
    array[:] = data
    with open_volume(tmp_path / "v.zarr", channel=1) as reader:
        np.testing.assert_array_equal(reader.read_slab(0, 6), data[:, 1])
    zarr.create_array(tmp_path / "yxz.zarr", shape=(7, 8, 6), dtype=np.uint16, zarr_format=3, dimension_names=["y", "x", "z"])
    with pytest.raises(InputError, match="unsupported axis order YXZ"):
        open_volume(tmp_path / "yxz.zarr")
    own = zarr.create_array(tmp_path / "dims.zarr", shape=(6, 7, 8), dtype=np.uint16, zarr_format=2)
    own.attrs["_ARRAY_DIMENSIONS"] = ["dim_0", "dim_1", "dim_2"]  # xarray's names where none were given: the usual order
    with open_volume(tmp_path / "dims.zarr") as reader:
        assert reader.shape == (6, 7, 8)


def test_ome_zarr_reads_the_finest_level_and_needs_its_scale(tmp_path: Path, zarr) -> None:
    group = zarr.open_group(tmp_path / "b.zarr", mode="w", zarr_format=2)
    group.create_array("coarse", shape=(3, 3, 4), dtype=np.uint16)[:] = 0
    data = volume((6, 7, 8), np.uint16)
    group.create_array("fine", shape=data.shape, dtype=data.dtype)[:] = data
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    datasets = [{"path": "coarse", "coordinateTransformations": [{"type": "scale", "scale": [8.0, 4.0, 4.0]}]},
                {"path": "fine", "coordinateTransformations": [{"type": "scale", "scale": [4.0, 2.0, 2.0]}]}]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    with open_volume(tmp_path / "b.zarr") as reader:  # listed coarse first: the finest is still the one read
        assert reader.shape == (6, 7, 8) and reader.voxel_size == pytest.approx((4.0, 2.0, 2.0))
    with open_volume(tmp_path / "b.zarr" / "coarse") as reader:  # a level by its path: the group's scale for it
        assert reader.shape == (3, 3, 4) and reader.voxel_size == pytest.approx((8.0, 4.0, 4.0))
    datasets.append({"path": "missing", "coordinateTransformations": [{"type": "scale", "scale": [16.0, 8.0, 8.0]}]})
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    with open_volume(tmp_path / "b.zarr") as reader:  # a level the store lacks (a partial copy) is passed over
        assert reader.shape == (6, 7, 8)
    for transforms in ([], [{"type": "scale", "scale": [4.0, 2.0]}], [{"type": "scale", "path": "scale.bin"}]):
        datasets[1]["coordinateTransformations"] = transforms  # no scale of its own: units alone are no voxel size
        group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
        with open_volume(tmp_path / "b.zarr") as reader:
            assert reader.voxel_size is None


def test_bigtiff_names_are_read_and_other_microscope_formats_named(tmp_path: Path) -> None:
    data = volume()
    tifffile.imwrite(tmp_path / "v.btf", data, bigtiff=True, metadata={"axes": "ZYX"})
    np.testing.assert_array_equal(read_all(tmp_path / "v.btf"), data)
    (tmp_path / "brain.ims").write_bytes(b"\x89HDF")
    with pytest.raises(InputError, match=r"brain\.ims: unsupported format \(Imaris: export it as OME-TIFF or OME-Zarr first"):
        open_volume(tmp_path / "brain.ims")
    # planes written as samples of one page (tifffile did so for a 3- or 4-plane stack without axes)
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((5, 8, 8), np.uint16), photometric="minisblack", planarconfig="separate")
    with pytest.raises(InputError, match=r"has 5 channels \(axes SYX\).*save it again with axes ZYX"):
        open_volume(tmp_path / "five.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")  # a colour picture: no such hint
    with pytest.raises(InputError, match=r"has 3 channels \(axes YXS\); choose one with --channel$"):
        open_volume(tmp_path / "rgb.tif")
    (tmp_path / "brain.n5").mkdir()  # a store, not a folder of planes
    with pytest.raises(InputError, match=r"brain\.n5: unsupported format \(N5"):
        open_volume(tmp_path / "brain.n5")


def test_a_folder_of_imagej_planes_does_not_invent_a_plane_spacing(tmp_path: Path) -> None:
    """Fiji's 2D planes record their pixel size but no z step: the folder's voxel size is unknown, not 1 µm along z."""
    for k, plane in enumerate(volume()):
        tifffile.imwrite(tmp_path / f"plane_{k:03d}.tif", plane, imagej=True, resolution=(0.5, 0.5), metadata={"unit": "micron"})
    with open_volume(tmp_path) as reader:
        assert reader.voxel_size is None


def test_a_block_reads_as_the_whole_volume_cut_there():
    """Across its READ_PLANES reads of whole planes; positions map back to the whole by its origin."""
    from clarity_fast.io.block import BlockReader

    data = np.random.default_rng(0).integers(0, 60000, (40, 20, 30)).astype(np.uint16)
    bounds = ((3, 37), (5, 17), (0, 29))
    block = BlockReader(volumes.open_array(data), bounds=bounds, name="3:37x5:17x:29")
    assert block.shape == (34, 12, 29) and block.dtype == data.dtype and list(block.origin) == [3, 5, 0]
    for z0, z1 in ((0, 34), (15, 17), (10, 33)):
        np.testing.assert_array_equal(block.read_slab(z0, z1), data[3 + z0 : 3 + z1, 5:17, 0:29])
    assert "3:37x5:17x:29" in str(block.path)
