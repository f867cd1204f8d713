"""The tqdm class handed to snapshot_download reports the overall byte bar, and only that one."""

from __future__ import annotations

from promptyard.plugins.hf_files import reporting_tqdm


def test_only_the_overall_byte_bar_reports_its_bytes():
    seen = []
    bar_class = reporting_tqdm(lambda done, total: seen.append((done, total)))
    # The bars snapshot_download builds from tqdm_class: files fetched, bytes on the wire, bytes written overall.
    files = bar_class(total=3, desc="Fetching 3 files")
    transfer = bar_class(total=0, unit="B", unit_scale=True, desc="Downloading bytes")
    overall = bar_class(total=0, unit="B", unit_scale=True, desc="Reconstructing (incomplete total...)")
    files.update(1)
    transfer.update(100)
    overall.total = 4096
    overall.refresh()
    overall.update(1024)
    overall.update(3072)
    assert seen[-2:] == [(1024, 4096), (4096, 4096)]
    assert all(total in (None, 4096) for _, total in seen)
    for bar in (files, transfer, overall):
        bar.close()
