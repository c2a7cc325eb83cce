"""Tests of msa_export.data.datasets: the three forms and every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from msa_export.data.datasets import Dataset, DatasetError, Sample, load_dataset
from msa_runtime.errors import MsaError

MOSI_LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mosi" / "label.csv"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")


MMSA_CSV = (
    "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
    "vidA,1,it was great,2.2,2,2,2,Positive,train\n"
    'vidA,2,"meh, not sure",-0.4,0,0,0,Negative,valid\n'
    "vid_B,1,awful,-3.0,0,0,0,Negative,test\n"
)

MOSI_CSV = (
    "id,text,label,mode\n"
    "abc_1,anyhow it was really good,2.4,train\n"
    "ab_c_2,not a whole bunch,-1.75,dev\n"
    "ab_c_3,ok,0.0,test\n"
)


# ---------------------------------------------------------------------------------------------
# MMSA form


def test_mmsa_folder(tmp_path: Path) -> None:
    root = tmp_path / "MOSI"
    write(root / "label.csv", MMSA_CSV)
    touch(root / "Raw" / "vidA" / "1.mp4")
    touch(root / "Raw" / "vid_B" / "1.mp4")
    ds = load_dataset(root)
    assert isinstance(ds, Dataset)
    assert ds.form == "mmsa" and ds.name == "MOSI" and ds.root == root
    assert ds.source == root / "label.csv"
    assert [s.id for s in ds.samples] == ["vidA_1", "vidA_2", "vid_B_1"]
    first = ds.samples[0]
    assert first == Sample(
        id="vidA_1",
        text="it was great",
        label=2.2,
        split="train",
        media=root / "Raw" / "vidA" / "1.mp4",
        start=None,
        end=None,
    )
    assert ds.samples[1].text == "meh, not sure"
    assert ds.samples[1].split == "dev"  # "valid" normalised
    assert ds.counts() == {"train": 1, "dev": 1, "test": 1}
    assert ds.has_media
    assert ds.missing_media == ("vidA_2",)
    assert len(ds) == 3


def test_mmsa_without_raw_folder_lists_all_missing(tmp_path: Path) -> None:
    write(tmp_path / "label.csv", MMSA_CSV)
    ds = load_dataset(tmp_path / "label.csv")
    assert not ds.has_media
    assert ds.missing_media == ("vidA_1", "vidA_2", "vid_B_1")


# ---------------------------------------------------------------------------------------------
# MOSI (text-only) form


@pytest.mark.parametrize("as_file", [False, True])
def test_mosi_form(tmp_path: Path, as_file: bool) -> None:
    csv_path = write(tmp_path / "mosi" / "label.csv", MOSI_CSV)
    ds = load_dataset(csv_path if as_file else csv_path.parent)
    assert ds.form == "mosi" and ds.name == "mosi"
    assert [s.id for s in ds.samples] == ["abc_1", "ab_c_2", "ab_c_3"]
    assert all(s.media is None and s.start is None and s.end is None for s in ds.samples)
    assert ds.samples[1].label == -1.75
    assert not ds.has_media and ds.missing_media == ()
    assert [s.id for s in ds.split("dev")] == ["ab_c_2"]
    assert ds.split("valid") == ds.split("dev") == ds.split("VAL")


def test_real_mosi_labels() -> None:
    if not MOSI_LABELS.is_file():
        pytest.skip(f"reference data {MOSI_LABELS} absent (only in the shared workspace)")
    ds = load_dataset(MOSI_LABELS.parent)
    assert ds.form == "mosi"
    assert (len(ds.split("train")), len(ds.split("dev")), len(ds.split("test"))) == (
        1281,
        229,
        685,
    )
    assert not ds.has_media
    assert all(-3.0 <= s.label <= 3.0 for s in ds.samples)
    assert ds.samples[0].id == "03bSnISJMiM_1"
    assert ds.samples[0].text == "anyhow it was really good"
    assert ds.samples[0].label == pytest.approx(2.4)


# ---------------------------------------------------------------------------------------------
# Plain manifest form


def test_manifest(tmp_path: Path) -> None:
    touch(tmp_path / "clips" / "a.mp4")
    absolute = tmp_path / "elsewhere" / "b.mkv"
    touch(absolute)
    csv_path = write(
        tmp_path / "my_set.csv",
        "media,start,end,text,label,split,extra\n"
        "clips/a.mp4,,,hello there,1.5,Train,x\n"
        f"{absolute},0.5,2.25,,-2,validation,y\n"
        ",,,only words,0,test,z\n"
        "clips/gone.mp4,1,,,3,test,z\n",
    )
    ds = load_dataset(csv_path)
    assert ds.form == "manifest" and ds.name == "my_set" and ds.root == tmp_path
    a, b, c, d = ds.samples
    assert a.id == "clips/a" and a.media == tmp_path / "clips" / "a.mp4" and a.split == "train"
    assert a.start is None and a.end is None and a.text == "hello there"
    assert b.media == absolute and (b.start, b.end) == (0.5, 2.25) and b.split == "dev"
    assert b.id == f"{absolute.with_suffix('').as_posix()}@0.5-2.25"
    assert b.text == "" and b.label == -2.0
    assert c.media is None and c.id == "line4"
    assert d.id == "clips/gone@1-" and d.start == 1.0 and d.end is None
    assert ds.missing_media == ("clips/gone@1-",)
    assert ds.has_media


def test_manifest_id_column_and_optional_text(tmp_path: Path) -> None:
    write(tmp_path / "m" / "manifest.csv", "id,media,label,split\nx1,,0.5,train\nx2,,1,dev\n")
    ds = load_dataset(tmp_path / "m", require_splits=("train", "dev"))
    assert ds.name == "m"
    assert [s.id for s in ds.samples] == ["x1", "x2"]
    assert all(s.text == "" for s in ds.samples)


def test_header_is_case_and_space_insensitive_and_bom_ok(tmp_path: Path) -> None:
    path = tmp_path / "label.csv"
    path.write_bytes(
        "\ufeffID , Text,LABEL,Mode\r\na_1,x,1,train\r\n\r\na_2,y,2,dev\r\na_3,z,3,test\r\n".encode()
    )
    ds = load_dataset(path)
    assert ds.form == "mosi" and len(ds) == 3  # the blank line is skipped


def test_has_media_false_without_existing_files(tmp_path: Path) -> None:
    write(tmp_path / "m.csv", "media,label,split\nnope.mp4,1,train\n,1,dev\n,1,test\n")
    ds = load_dataset(tmp_path / "m.csv")
    assert not ds.has_media and ds.missing_media == ("nope",)


def test_require_splits(tmp_path: Path) -> None:
    write(tmp_path / "m.csv", "media,label,split\n,1,test\n")
    ds = load_dataset(tmp_path / "m.csv", require_splits=("test",))
    assert ds.counts() == {"train": 0, "dev": 0, "test": 1}
    assert ds.split("train") == []
    assert len(load_dataset(tmp_path / "m.csv", require_splits=())) == 1
    with pytest.raises(DatasetError, match="require_splits"):
        load_dataset(tmp_path / "m.csv", require_splits=("holdout",))


# ---------------------------------------------------------------------------------------------
# Errors


def expect_error(path: Path, *fragments: str) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, MsaError)
    return message


def test_missing_path(tmp_path: Path) -> None:
    expect_error(tmp_path / "nowhere", "does not exist", "nowhere")


def test_folder_without_csv(tmp_path: Path) -> None:
    expect_error(tmp_path, "neither label.csv nor manifest.csv")


def test_empty_file(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "label.csv", ""), "is empty")


@pytest.mark.parametrize(
    "header,missing,form",
    [
        ("video_id,clip_id,label,mode", "text", "mmsa"),
        ("id,text,label", "mode", "mosi"),
        ("media,text,start", "label, split", "manifest"),
        ("foo,bar,label", "", ""),
    ],
)
def test_missing_columns(tmp_path: Path, header: str, missing: str, form: str) -> None:
    path = write(tmp_path / "label.csv", header + "\n")
    message = expect_error(path, "lacks column(s)", "accepted forms", "MMSA", "manifest")
    assert missing in message and form in message


def test_duplicate_columns(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "a.csv", "id,text,label,label,mode\n"), "duplicate column")


def test_too_many_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,text,label,mode\na_1,hi, there,1,train\n")
    expect_error(path, "line 2", "5 fields", "quote")


def test_unparsable_label(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.csv",
        "id,text,label,mode\na_1,x,1,train\na_2,x,positive,dev\na_3,x,,test\na_4,x,nan,test\n",
    )
    expect_error(path, "3 label(s) are not numbers", "line 3 ('positive')", "line 4 ('')", "nan")


def test_labels_out_of_range(tmp_path: Path) -> None:
    rows = "".join(f"a_{i},x,{4 + i},train\n" for i in range(7))
    path = write(tmp_path / "a.csv", "id,text,label,mode\n" + rows + "b,x,-3.5,dev\nc,x,3,test\n")
    expect_error(path, "8 label(s) outside [-3, 3]", "line 2 (4)", "(3 more)")


def test_unknown_split(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,text,label,mode\na,x,1,train\nb,x,1,holdout\nc,x,1,\nd,x,1,test\n")
    expect_error(path, "unknown mode value(s)", "'holdout' (line 3)", "'' (line 4)")


def test_empty_split(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "media,label,split\n,1,train\n,1,train\n,0,test\n")
    expect_error(path, "split(s) dev have no samples", "train 2, dev 0, test 1")


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path / "label.csv",
        "video_id,clip_id,text,label,mode\nv,1,a,1,train\nv,1,b,1,dev\nv,2,c,1,test\n",
    )
    expect_error(path, "1 duplicate id(s)", "'v_1' (lines 2 and 3)")


def test_duplicate_ids_from_media(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "media,label,split\na.mp4,1,train\na.mp4,1,dev\n,1,test\n")
    expect_error(path, "duplicate id", "'a'")


def test_empty_id(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,text,label,mode\n,x,1,train\nb,x,1,dev\nc,x,1,test\n")
    expect_error(path, "empty id", "line 2")


@pytest.mark.parametrize(
    "start,end,fragment",
    [("abc", "", "start 'abc'"), ("-1", "", "start '-1'"), ("2", "1", "end 1 <= start 2")],
)
def test_bad_times(tmp_path: Path, start: str, end: str, fragment: str) -> None:
    path = write(
        tmp_path / "m.csv",
        f"media,start,end,label,split\na.mp4,{start},{end},1,train\nb.mp4,,,1,dev\nc.mp4,,,1,test\n",
    )
    expect_error(path, "bad start/end", "line 2", fragment)


def test_times_without_media(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "media,start,end,label,split\n,1,2,1,train\n")
    expect_error(path, "without media")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,text,label,mode\na,caf\xe9,1,train\n")
    expect_error(path, "not UTF-8")


def test_unknown_split_name_in_split_method(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path / "label.csv", MOSI_CSV))
    with pytest.raises(DatasetError, match="unknown split name"):
        ds.split("holdout")
