from pathlib import Path

import pytest

from ragline import DocumentError
from ragline.ingest.loaders import iter_files, load_file

MB = 1_000_000


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with one line of Helvetica text, built by hand."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def load(path: Path):
    return load_file(path, "t", 20 * MB, document_id=path.name)


def test_markdown_title_becomes_metadata(tmp_path):
    (tmp_path / "a.md").write_text("# Bees\n\nThey dance.")
    doc = load(tmp_path / "a.md")
    assert doc.metadata["title"] == "Bees" and "They dance." in doc.text


def test_html_keeps_text_and_drops_scripts_and_styles(tmp_path):
    (tmp_path / "p.html").write_text(
        "<html><head><title>T</title><style>x{}</style></head>"
        "<body><script>alert(1)</script><p>Hello &amp; welcome</p><p>Second</p></body></html>"
    )
    doc = load(tmp_path / "p.html")
    assert doc.text == "Hello & welcome\n\nSecond" and doc.metadata["title"] == "T"


def test_pdf_text_is_extracted(tmp_path):
    (tmp_path / "d.pdf").write_bytes(minimal_pdf("Lighthouses guide ships"))
    assert "Lighthouses guide ships" in load(tmp_path / "d.pdf").text


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.txt", b"", "empty"),
        ("blank.md", b"  \n\n ", "empty"),
        ("binary.txt", b"\x7fELF\x00\x01\x02" * 100, "binary"),
        ("latin1.txt", "caf\u00e9".encode("latin-1"), "not UTF-8"),
        ("broken.pdf", b"%PDF-1.4 garbage", "PDF"),
    ],
)
def test_bad_files_raise_a_document_error_that_says_why(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DocumentError, match=reason) as info:
        load(tmp_path / name)
    assert name in str(info.value)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(50 * MB)  # sparse: 50 MB that cost no disk
    with pytest.raises(DocumentError, match=r"too large: 50.0 MB exceeds the 20.0 MB limit"):
        load(big)


def test_an_unreadable_file_is_a_document_error(tmp_path):
    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    with pytest.raises(DocumentError, match="unreadable"):
        load(tmp_path / "gone.txt")


def test_walking_a_directory_skips_hidden_files_and_reports_unsupported_ones(tmp_path):
    for name in ("b.md", "a.txt", ".hidden.txt", "image.png", "sub/c.html", ".git/x.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = list(iter_files([tmp_path]))
    assert [item[1] for item in found if isinstance(item, tuple)] == ["a.txt", "b.md", "sub/c.html"]
    [refused] = [item for item in found if isinstance(item, DocumentError)]
    assert refused.source.endswith("image.png") and "unsupported file type .png" in refused.reason
    assert ".docx" in refused.reason and ".eml" in refused.reason  # the supported list


def test_ids_are_relative_to_the_ingested_root_whatever_the_working_directory(tmp_path, monkeypatch):
    """The same file ingested from two working directories is one document (its id used
    to be its path relative to the working directory when under it)."""
    (tmp_path / "kb" / "guide").mkdir(parents=True)
    (tmp_path / "kb" / "guide" / "setup.md").write_text("x")
    seen = set()
    for cwd, target in ((tmp_path, Path("kb")), (tmp_path / "kb", Path(".")), (tmp_path / "kb" / "guide", Path(".."))):
        monkeypatch.chdir(cwd)
        seen |= {doc_id for _, doc_id in iter_files([target])}
    assert seen == {"guide/setup.md"}
    monkeypatch.chdir(tmp_path / "kb" / "guide")
    assert [i for _, i in iter_files([Path("setup.md")], id_prefix="kb/")] == ["kb/setup.md"]
    assert [i for _, i in iter_files([tmp_path / "kb"], id_prefix="kb/")] == ["kb/guide/setup.md"]


def test_a_missing_path_is_reported_not_raised(tmp_path):
    [item] = list(iter_files([tmp_path / "missing"]))
    assert isinstance(item, DocumentError) and "no such file" in str(item)


def test_a_symlink_out_of_the_ingested_directory_is_skipped_unless_followed(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("root:x:0:0:root:/root:/bin/bash")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "note.txt").write_text("an ordinary note")
    (root / "passwd.txt").symlink_to(outside)
    found = list(iter_files([root]))
    assert [f[0].name for f in found if isinstance(f, tuple)] == ["note.txt"]
    [skipped] = [f for f in found if isinstance(f, DocumentError)]
    assert "symbolic link out of the ingested directory" in str(skipped)
    assert len([f for f in iter_files([root], follow_symlinks=True) if isinstance(f, tuple)]) == 2


def test_a_file_that_reports_no_size_cannot_pass_the_size_limit(tmp_path):
    fifo_like = Path("/proc/self/status")  # size 0 in stat, bytes when read
    with pytest.raises(DocumentError, match="too large"):
        load_file(fifo_like, "t", max_bytes=10, document_id="status")


def test_a_pdf_whose_text_expands_past_the_limit_is_refused(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    from isolation import bomb_pdf

    path = tmp_path / "bomb.pdf"
    path.write_bytes(bomb_pdf(300_000))
    assert path.stat().st_size < 5_000
    with pytest.raises(DocumentError, match="expands past"):
        load_file(path, "t", max_bytes=100_000, document_id="bomb.pdf")
