"""read_points / write_points: CSV and CellCounter XML round trips, the real cellfinder list, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clarity_fast.errors import InputError
from clarity_fast.io.points import Points, read_points, write_points

CROP_SHAPE = (30, 510, 667)


def sample(*, score: bool = True, label: bool = True) -> Points:
    return Points(
        zyx=np.array([[1.0, 2.25, 3.5], [10.4, 20.6, 30.0], [0.0, 0.0, 0.0]]),
        score=np.array([0.9, 0.125, 1e-7]) if score else None,
        label=np.array([1, 0, 1]) if label else None,
    )


@pytest.mark.parametrize(("score", "label"), [(True, True), (False, False), (True, False), (False, True)])
def test_csv_round_trip(tmp_path: Path, score: bool, label: bool) -> None:
    points = sample(score=score, label=label)
    write_points(tmp_path / "p.csv", points)
    back = read_points(tmp_path / "p.csv")
    np.testing.assert_allclose(back.zyx, points.zyx, atol=5e-4)
    assert (back.score is None) == (not score) and (back.label is None) == (not label)
    if score:
        np.testing.assert_allclose(back.score, points.score, rtol=1e-5)
    if label:
        np.testing.assert_array_equal(back.label, points.label)
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "z,y,x" + (",score" if score else "") + (",label" if label else "")


def test_csv_is_byte_identical_for_the_same_points(tmp_path: Path) -> None:
    write_points(tmp_path / "a.csv", sample())
    write_points(tmp_path / "b.csv", sample())
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_text().splitlines()[1] == "1.000,2.250,3.500,0.9,1"


def test_empty_csv(tmp_path: Path) -> None:
    write_points(tmp_path / "p.csv", Points(zyx=np.empty((0, 3))))
    assert (tmp_path / "p.csv").read_text() == "z,y,x\n"
    points = read_points(tmp_path / "p.csv")
    assert len(points) == 0 and points.zyx.shape == (0, 3)


def test_csv_columns_by_name_in_any_order(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("\ufeffID, X ,Y,Z,Label,extra\n7,3,2,1,0,foo\n\n8,6,5,4,1,bar\n")
    points = read_points(tmp_path / "p.csv")
    np.testing.assert_array_equal(points.zyx, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(points.label, [0, 1])
    assert points.score is None


def test_points_are_read_only(tmp_path: Path) -> None:
    points = sample()
    assert points.zyx.dtype == np.float64 and points.label.dtype == np.int64
    with pytest.raises(ValueError):
        points.zyx[0, 0] = 5


def test_xml_round_trip_keeps_labels_and_rounds(tmp_path: Path) -> None:
    write_points(tmp_path / "p.xml", sample(), image_filename="signal.tif")
    text = (tmp_path / "p.xml").read_text()
    assert "<Image_Filename>signal.tif</Image_Filename>" in text
    assert text.index("<Type>1</Type>") < text.index("<Type>2</Type>")
    back = read_points(tmp_path / "p.xml")
    assert back.score is None
    # Type 1 (non-cells) is written first, so the non-cell comes back first.
    np.testing.assert_array_equal(back.zyx, [[10, 21, 30], [1, 2, 4], [0, 0, 0]])
    np.testing.assert_array_equal(back.label, [0, 1, 1])


def test_xml_without_labels_are_all_cells(tmp_path: Path) -> None:
    write_points(tmp_path / "p.xml", sample(label=False))
    assert read_points(tmp_path / "p.xml").label.tolist() == [1, 1, 1]


def test_xml_other_types_are_non_cells(tmp_path: Path) -> None:
    marker = "<Marker><MarkerX>{}</MarkerX><MarkerY>2</MarkerY><MarkerZ>1</MarkerZ></Marker>"
    blocks = "".join(f"<Marker_Type><Type>{t}</Type>{marker.format(t + 5)}</Marker_Type>" for t in (-1, 2, 3))
    root = "<CellCounter_Marker_File><Marker_Data>{}</Marker_Data></CellCounter_Marker_File>"
    (tmp_path / "p.xml").write_text(root.format(blocks))
    points = read_points(tmp_path / "p.xml")
    np.testing.assert_array_equal(points.zyx[:, 2], [4, 7, 8])
    np.testing.assert_array_equal(points.label, [0, 1, 0])


def test_xml_of_rejected_candidates_only_reads_back_as_non_cells(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # cellfinder's layout means what it says even when every candidate was rejected: clarity-fast writes both blocks,
    # cellfinder only the Type 1 block that has markers. Either way the reader says so in one warning.
    rejected = Points(zyx=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), label=np.array([0, 0]))
    write_points(tmp_path / "p.xml", rejected)
    marker = "<Marker><MarkerX>3</MarkerX><MarkerY>2</MarkerY><MarkerZ>1</MarkerZ></Marker>"
    (tmp_path / "cellfinder.xml").write_text(
        f"<CellCounter_Marker_File><Marker_Data><Marker_Type><Type>1</Type>{marker}</Marker_Type></Marker_Data></CellCounter_Marker_File>"
    )
    for name, n in (("p.xml", 2), ("cellfinder.xml", 1)):
        caplog.clear()
        assert read_points(tmp_path / name).label.tolist() == [0] * n
        assert [r.getMessage() for r in caplog.records] == [f"{tmp_path / name}: none of the {n} markers is Type 2 (a cell in cellfinder's convention; types used: 1), so all are read as non-cells; if they are cells, mark them Type 2 or give a CSV"]


def test_format_argument_overrides_suffix(tmp_path: Path) -> None:
    write_points(tmp_path / "p.txt", sample(), format="xml")
    assert (tmp_path / "p.txt").read_text().startswith("<?xml")


def test_committed_cellfinder_points_survive_csv_xml_csv(tmp_path: Path, test_data: Path) -> None:
    original = read_points(test_data / "cellfinder_crop" / "points.csv", shape=CROP_SHAPE)
    assert len(original) == 56 and original.label.tolist() == [1] * 56
    write_points(tmp_path / "cells.xml", original)
    via_xml = read_points(tmp_path / "cells.xml", shape=CROP_SHAPE)
    write_points(tmp_path / "cells.csv", via_xml)
    back = read_points(tmp_path / "cells.csv", shape=CROP_SHAPE)
    np.testing.assert_array_equal(back.zyx, original.zyx)
    np.testing.assert_array_equal(back.label, original.label)


def test_shared_cellfinder_points(shared_data: Path, test_data: Path) -> None:
    path = shared_data / "cellfinder_crop" / "points.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    points = read_points(path, shape=CROP_SHAPE)
    assert len(points) == 56
    assert set(np.unique(points.zyx[:, 0])) <= set(range(10, 20))
    np.testing.assert_array_equal(points.zyx, read_points(test_data / "cellfinder_crop" / "points.csv").zyx)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("z,y\n1,2\n", r"no 'x' column"),
        ("z,y,x\n1,2,3\n1,two,3\n", r"p\.csv line 3: y is not a number: 'two'"),
        ("z,y,x\n1,2,nan\n", r"p\.csv line 2: x must be a finite number"),
        ("z,y,x,label\n1,2,3,2\n", r"line 2: label must be 0 .* or 1"),
        ("z,y,x\n1,2\n", r"line 2: 2 values, the header has 3 columns"),
        ("", r"empty file"),
        ("z;y;x\n1;2;3\n", r"separated by ';'\? write it with commas"),
        ("z,y,x,x\n1,2,3,4\n", r"2 'x' columns in the header"),
    ],
)
def test_bad_csv(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "p.csv").write_text(content)
    with pytest.raises(InputError, match=message):
        read_points(tmp_path / "p.csv")


def test_point_outside_the_volume(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("z,y,x\n1,2,3\n29,509,667.5\n")
    read_points(tmp_path / "p.csv")
    outside = r"line 3: point \(z=29, y=509, x=667.5\) lies outside the volume of shape \(30, 510, 667\)"
    with pytest.raises(InputError, match=outside):
        read_points(tmp_path / "p.csv", shape=CROP_SHAPE)
    write_points(tmp_path / "p.xml", Points(zyx=np.array([[-1.0, 0, 0]])))
    with pytest.raises(InputError, match="marker 1 of Type 2: point .* outside"):
        read_points(tmp_path / "p.xml", shape=CROP_SHAPE)
    # a point on the last voxel's far half rounds to the edge in a whole-voxel XML, and reads back (as does napari's -0.3)
    write_points(tmp_path / "edge.xml", Points(zyx=np.array([[29.0, 509.0, 666.9], [-0.3, 0, 0]])))
    np.testing.assert_array_equal(read_points(tmp_path / "edge.xml", shape=CROP_SHAPE).zyx, [[29, 509, 667], [0, 0, 0]])


def test_malformed_xml(tmp_path: Path) -> None:
    (tmp_path / "p.xml").write_text("<CellCounter_Marker_File><Marker_Data>")
    with pytest.raises(InputError, match=r"p\.xml: malformed XML"):
        read_points(tmp_path / "p.xml")
    (tmp_path / "q.xml").write_text("<svg/>")
    with pytest.raises(InputError, match="not a CellCounter marker file"):
        read_points(tmp_path / "q.xml")


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("[]")
    with pytest.raises(InputError, match=r"p\.json: unsupported points format 'json'"):
        read_points(tmp_path / "p.json")
    with pytest.raises(InputError, match="unsupported points format"):
        write_points(tmp_path / "p.json", sample())
    with pytest.raises(InputError, match="no such file"):
        read_points(tmp_path / "none.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


def test_bad_points_shapes() -> None:
    with pytest.raises(InputError, match=r"zyx must have shape \(N, 3\)"):
        Points(zyx=np.zeros((4, 2)))
    with pytest.raises(InputError, match=r"label must have shape \(2,\)"):
        Points(zyx=np.zeros((2, 3)), label=np.zeros(3))


finite = st.floats(min_value=-1e5, max_value=1e5, allow_nan=False, allow_infinity=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    zyx=st.integers(0, 20).flatmap(lambda n: hnp.arrays(np.float64, (n, 3), elements=finite)),
    with_score=st.booleans(),
    data=st.data(),
)
def test_csv_round_trip_property(tmp_path: Path, zyx: np.ndarray, with_score: bool, data: st.DataObject) -> None:
    n = len(zyx)
    score = data.draw(hnp.arrays(np.float64, n, elements=finite)) if with_score else None
    label = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    points = Points(zyx=zyx, score=score, label=label)
    write_points(tmp_path / "p.csv", points)
    back = read_points(tmp_path / "p.csv")
    np.testing.assert_allclose(back.zyx, zyx, atol=5e-4, rtol=0)
    np.testing.assert_array_equal(back.label, label)
    if with_score:
        np.testing.assert_allclose(back.score, score, rtol=1e-5)
    write_points(tmp_path / "again.csv", points)
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()


def test_cells_are_the_points_labelled_cells(tmp_path):
    """cellfinder's XML lists rejected candidates as Type 1; Fiji users often mark cells with Type 1 alone (in a file
    of eight types), so such an XML of one type is all cells; a CSV's label column means what it says, all zeros
    included."""
    both = Points(zyx=[[1, 2, 3], [4, 5, 6], [7, 8, 9]], label=[1, 0, 1])
    np.testing.assert_array_equal(both.cells, [[1, 2, 3], [7, 8, 9]])
    assert Points(zyx=[[1, 2, 3]]).cells.shape == (1, 3)
    (tmp_path / "none.csv").write_text("z,y,x,label\n1,2,3,0\n4,5,6,0\n")
    assert read_points(tmp_path / "none.csv").cells.shape == (0, 3)
    marker = "<Marker><MarkerX>3</MarkerX><MarkerY>2</MarkerY><MarkerZ>1</MarkerZ></Marker>"
    blocks = "".join(f"<Marker_Type><Type>{t}</Type>{marker * 2 if t == 1 else ''}</Marker_Type>" for t in range(1, 9))
    (tmp_path / "fiji.xml").write_text(f"<CellCounter_Marker_File><Marker_Data>{blocks}</Marker_Data></CellCounter_Marker_File>")
    np.testing.assert_array_equal(read_points(tmp_path / "fiji.xml").cells, [[0, 2, 3], [0, 2, 3]])  # Fiji's slice 1 is plane 0


@pytest.mark.parametrize(("types", "slices", "planes"), [((1, 2), (1, 5), (1, 5)), (range(1, 9), (1, 5), (0, 4)), (range(1, 9), (0, 5), (0, 5))])
def test_fiji_numbers_slices_from_1_and_cellfinder_planes_from_0(tmp_path, caplog, types, slices, planes):
    """Fiji's Cell Counter (a file of its eight types) records ImageJ slice numbers; cellfinder's layout (Types 1 and
    2) counts planes from 0. A Fiji-layout file with a marker at 0 cannot count from 1: read as it is, and said so.
    The first plane's marker fits a one-plane volume either way."""
    marker = "<Marker><MarkerX>3</MarkerX><MarkerY>2</MarkerY><MarkerZ>{}</MarkerZ></Marker>"
    blocks = "".join(f"<Marker_Type><Type>{t}</Type>{''.join(marker.format(z) for z in slices) if t == 2 else ''}</Marker_Type>" for t in types)
    (tmp_path / "m.xml").write_text(f"<CellCounter_Marker_File><Marker_Data>{blocks}</Marker_Data></CellCounter_Marker_File>")
    with caplog.at_level("WARNING", logger="clarity_fast"):
        np.testing.assert_array_equal(read_points(tmp_path / "m.xml").cells[:, 0], planes)
    assert ("holds a marker at MarkerZ 0" in caplog.text) == (slices[0] == 0 and len(types) > 2)
    assert read_points(tmp_path / "m.xml", shape=(planes[1] + 1, 8, 8)).cells.shape == (2, 3)
    with pytest.raises(InputError, match="outside the volume"):
        read_points(tmp_path / "m.xml", shape=(planes[1] - 1, 8, 8))


def test_evaluate_scores_cells_not_non_cell_markers(tmp_path):
    from cli_runner import run_cli

    write_points(tmp_path / "pred.xml", Points(zyx=[[5, 5, 5], [20, 20, 20]], label=[1, 0]))
    write_points(tmp_path / "truth.csv", Points(zyx=[[5, 5, 5]]))
    done = run_cli("evaluate", "--pred", tmp_path / "pred.xml", "--truth", tmp_path / "truth.csv", "--json")
    assert done.returncode == 0, done.stderr
    assert '"fp": 0' in done.stdout and '"tp": 1' in done.stdout


def test_a_napari_points_layer_reads_as_z_y_x(tmp_path):
    """napari saves a points layer as index,axis-0,axis-1,axis-2 (z, y, x for a volume)."""
    (tmp_path / "napari.csv").write_text("index,axis-0,axis-1,axis-2\n0,4.0,10.5,20.25\n1,5.0,11.0,21.0\n")
    np.testing.assert_array_equal(read_points(tmp_path / "napari.csv").zyx, [[4.0, 10.5, 20.25], [5.0, 11.0, 21.0]])
    (tmp_path / "4d.csv").write_text("index,axis-0,axis-1,axis-2,axis-3\n0,0,4,10,20\n")
    with pytest.raises(InputError, match="more than three axes"):
        read_points(tmp_path / "4d.csv")


def test_the_format_is_named_in_any_case_and_a_folder_or_bare_name_is_refused(tmp_path):
    from clarity_fast.io.points import points_format

    assert points_format(tmp_path / "c.xml", "XML") == "xml"
    with pytest.raises(InputError, match="is a folder, not a .csv or .xml points file"):
        points_format(tmp_path)
    with pytest.raises(InputError, match="no suffix to tell the points format by"):
        points_format(tmp_path / ".csv")
