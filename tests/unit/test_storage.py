"""URIs map to the right files; JSONL appends survive a half-written last line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.core.storage import local_path


@pytest.mark.parametrize(
    ("uri", "want"),
    [
        ("/data/x.jsonl", Path("/data/x.jsonl")),
        ("relative/x.jsonl", Path("relative/x.jsonl")),
        ("file:///data/x.jsonl", Path("/data/x.jsonl")),
        ("pvc://results/run-1/scores.json", Path("/pvc-root/results/run-1/scores.json")),
        ("s3://bucket/x.jsonl", None),
        ("https://example.org/x.jsonl", None),
    ],
    ids=["plain", "relative", "file", "pvc", "s3", "https"],
)
def test_local_path(uri: str, want: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(storage.PVC_ROOT_ENV, "/pvc-root")
    assert storage.local_path(uri) == want


def test_pvc_default_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(storage.PVC_ROOT_ENV, raising=False)
    assert storage.local_path("pvc://claim/a/b") == Path("/mnt/pvc/claim/a/b")


def test_pkg_uri_finds_a_package_file_without_importing_it() -> None:
    path = storage.local_path("pkg://json/decoder.py")  # any installed package will do
    assert path is not None and path.is_file()
    assert not storage.is_available("pkg://no_such_package_cotlab/x")
    with pytest.raises(FileNotFoundError, match="not installed"):
        storage.local_path("pkg://no_such_package_cotlab/x")


def test_append_after_a_half_written_line(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/out/s.jsonl"
    storage.append_jsonl(uri, [{"a": 1}])
    with open(tmp_path / "out" / "s.jsonl", "a") as f:
        f.write('{"a": 2, "b"')  # a kill mid-write
    storage.append_jsonl(uri, [{"a": 3}, {"a": 4}])
    lines = list(storage.iter_lines(uri))
    assert lines[0] == '{"a":1}' and lines[1] == '{"a": 2, "b"'
    assert [json.loads(line) for line in lines[2:]] == [{"a": 3}, {"a": 4}]


def test_write_text_replaces_and_join(tmp_path: Path) -> None:
    uri = storage.join(str(tmp_path), "x", "scores.json")
    storage.write_text(uri, "one")
    storage.write_text(uri, "two")
    assert storage.read_text(uri) == "two" and storage.exists(uri)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["scores.json"]
    assert storage.join("s3://b/run/", "samples", "/a.jsonl") == "s3://b/run/samples/a.jsonl"


def test_memory_filesystem_round_trip() -> None:
    uri = "memory://cotlab-test/s.jsonl"
    storage.append_jsonl(uri, [{"a": 1}])
    storage.append_jsonl(uri, [{"a": 2}])
    assert [json.loads(line) for line in storage.iter_lines(uri)] == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://claim/../../etc/passwd",
        "pkg://json/../../secrets",
        "pvc://../other-claim/x",
        "pvc://claim//etc/passwd",
        "pkg://json//etc/passwd",
        "pvc:///etc/passwd",
        "pvc://claim/a/../../other/x",
    ],
    ids=[
        "pvc-climbs-out",
        "pkg-climbs-out",
        "pvc-claim-dotdot",
        "pvc-absolute",
        "pkg-absolute",
        "pvc-no-claim",
        "pvc-folds-out",
    ],
)
def test_a_uri_cannot_leave_its_claim_or_package(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(storage.PVC_ROOT_ENV, "/pvc-root")
    with pytest.raises(InvalidSpecError, match="'..' is not allowed"):
        local_path(uri)


def test_the_claim_root_itself_and_folded_paths_inside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(storage.PVC_ROOT_ENV, "/pvc-root")
    assert local_path("pvc://claim") == Path("/pvc-root/claim")
    assert local_path("pvc://claim/a/./b") == Path("/pvc-root/claim/a/b")


@pytest.mark.parametrize(
    ("uri", "want"),
    [
        ("file:///data/in/x.jsonl", Path("/data/in/x.jsonl")),
        ("/data/out/x.jsonl", Path("/data/out/x.jsonl")),
        ("file:///etc/passwd", None),
        ("/data/../etc/passwd", None),
        ("file:///database/x", None),  # a sibling sharing the root's prefix is outside
    ],
    ids=["file-inside", "plain-inside", "file-outside", "plain-folds-out", "prefix-sibling"],
)
def test_file_uris_stay_under_the_operators_root(uri: str, want: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(storage.FILE_ROOT_ENV, "/data")
    if want is None:
        with pytest.raises(InvalidSpecError, match="must be under /data"):
            local_path(uri)
    else:
        assert local_path(uri) == want
