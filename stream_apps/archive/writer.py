"""Exactly-once file sets: each committed Kafka offset range of a topic partition becomes
Parquet files that hold every record of the range once, whatever crashes in between.

A range is committed in three steps (instore/archive.py has the layout):

1. its files are written under temporary names (``*.parquet.tmp``: no reader globs them),
2. its manifest (the range, its files, its record count) is written, atomically: the commit,
3. the files are renamed into place.

On start (``recover``) a manifest whose files are still temporary is rolled forward, and
temporary files without a manifest (a crash before step 2) are deleted. The next offset to
read is the last committed range's end + 1, from the manifests, not from Kafka's committed
offsets (those are committed too, after the manifest, for lag and lineage only). Folder or
any fsspec filesystem; on a folder every step is a rename.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from instore import archive as a
from stream_apps.archive.rows import Group

log = logging.getLogger(__name__)


@dataclass
class Committed:
    topic: str
    partition: int
    first: int
    last: int
    files: list[str]
    records: int


class ArchiveWriter:
    def __init__(self, location: str) -> None:
        self.location = location
        self.fs, self.root = a.filesystem(location)
        self.fs.makedirs(self.root, exist_ok=True)

    def _abs(self, rel: str) -> str:
        return posixpath.join(self.root, rel)

    # -- recovery -------------------------------------------------------------------------------
    def recover(self) -> tuple[int, int]:
        """Roll committed ranges forward and delete uncommitted files; returns (rolled forward,
        deleted)."""
        committed: set[str] = set()
        rolled = 0
        for path in self.fs.glob(self._abs(posixpath.join(a.MANIFESTS, "*", "*", "*.json"))):
            manifest = self._read_json(path)
            if manifest is None:
                continue
            for rel in manifest.get("files", []):
                final = self._abs(rel)
                committed.add(final)
                tmp = final + a.TMP_SUFFIX
                if self.fs.exists(tmp) and not self.fs.exists(final):
                    self.fs.mv(tmp, final)
                    rolled += 1
        deleted = 0
        for tmp in self.fs.glob(self._abs(posixpath.join("**", "*" + a.TMP_SUFFIX))):
            if tmp.removesuffix(a.TMP_SUFFIX) not in committed or self.fs.exists(
                    tmp.removesuffix(a.TMP_SUFFIX)):
                self.fs.rm(tmp)
                deleted += 1
        if rolled or deleted:
            log.info("archive recovery: %d file(s) rolled forward, %d uncommitted deleted",
                     rolled, deleted)
        return rolled, deleted

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The first offset not yet archived for this partition (None: nothing archived)."""
        last = None
        for path in self.fs.glob(self._abs(posixpath.join(a.manifest_dir(topic, partition),
                                                           "*.json"))):
            span = a.parse_manifest_name(path)
            if span is not None and (last is None or span[1] > last):
                last = span[1]
        return None if last is None else last + 1

    # -- commit ---------------------------------------------------------------------------------
    def commit(self, topic: str, partition: int, first: int, last: int,
               groups: dict[Group, list[dict[str, Any]]]) -> Committed:
        """Write one offset range's file set (possibly empty: the range is still recorded)."""
        name = a.range_name(topic, partition, first, last)
        files: list[str] = []
        records = 0
        for (dataset_name, day, store), rows in sorted(groups.items(), key=_group_order):
            dataset = a.BY_NAME[dataset_name]
            rel = posixpath.join(a.partition_dir(dataset, day, store), f"{name}.parquet")
            table = pa.Table.from_pylist(rows, schema=dataset.schema)
            self.fs.makedirs(posixpath.dirname(self._abs(rel)), exist_ok=True)
            with self.fs.open(self._abs(rel) + a.TMP_SUFFIX, "wb") as out:
                pq.write_table(table, out, compression="zstd")
            files.append(rel)
            records += len(rows)
        manifest = {"topic": topic, "partition": partition, "first": first, "last": last,
                    "records": records, "files": files}
        mpath = self._abs(a.manifest_path(topic, partition, first, last))
        self.fs.makedirs(posixpath.dirname(mpath), exist_ok=True)
        with self.fs.open(mpath + a.TMP_SUFFIX, "wb") as out:
            out.write(json.dumps(manifest).encode())
        self.fs.mv(mpath + a.TMP_SUFFIX, mpath)  # the commit point
        for rel in files:
            self.fs.mv(self._abs(rel) + a.TMP_SUFFIX, self._abs(rel))
        return Committed(topic, partition, first, last, files, records)

    def _read_json(self, path: str) -> dict[str, Any] | None:
        try:
            with self.fs.open(path, "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError) as exc:
            log.warning("archive: unreadable manifest %s: %s", path, type(exc).__name__)
            return None
        return data if isinstance(data, dict) else None


def _group_order(item: tuple[Group, Any]) -> tuple[str, str, str]:
    (dataset, day, store), _ = item
    return dataset, day.isoformat(), store or ""
