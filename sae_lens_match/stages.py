"""Resumable stages of a pipeline: a folder of results that a rerun reuses only when it was
made from the same inputs and config, and is still intact.

A stage is keyed on everything that produced it (configs, fingerprints of its inputs, the
keys of the stages it read). When it finishes it records that key and a checksum of every
file it wrote. A rerun reuses it only if both still hold; otherwise the folder is emptied and
the stage recomputed. Partial work of the *same* key (e.g. a trainer's checkpoints) is kept,
so an interrupted stage resumes rather than restarts.

Usage::

    stage = Stage.of(out / "tuned_model", {"config": cfg, "model": model_sha})
    if not stage.done():
        stage.start()
        ...  # write into stage.directory
        stage.finish()
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_lens_match.atomic import write_json, write_text
from sae_lens_match.fingerprints import sha256_file, sha256_json

logger = logging.getLogger(__name__)

RECORD = "stage.json"
STARTED = ".stage-key"


@dataclass(frozen=True)
class Stage:
    """A folder of results and the key of what produced it.

    Attributes:
        directory: the folder the stage owns (it may be emptied when the key changes).
        key: SHA-256 of the stage's inputs and config.
    """

    directory: Path
    key: str

    @classmethod
    def of(cls, directory: str | Path, inputs: Any) -> "Stage":
        """The stage at ``directory`` keyed on ``inputs`` (anything JSON-serialisable, e.g. a
        config's ``asdict`` and content hashes of the inputs)."""
        return cls(Path(directory), sha256_json(inputs))

    def done(self) -> bool:
        """Whether the folder holds this key's finished result, every file as it was written."""
        path = self.directory / RECORD
        if not path.is_file():
            return False
        try:
            record = json.loads(path.read_text())
            key, files = record["key"], record["files"]
        except (ValueError, KeyError, TypeError):
            logger.warning("%s is unreadable; recomputing %s.", path, self.directory)
            return False
        if key != self.key:
            logger.info("%s was made from other inputs or another config; recomputing it.", self.directory)
            return False
        changed = [name for name, digest in files.items() if not (self.directory / name).is_file() or sha256_file(self.directory / name) != digest]
        if changed:
            logger.warning("%s: %s changed or vanished since it was written; recomputing it.", self.directory, ", ".join(changed[:3]))
            return False
        return True

    def start(self, *, resume: bool = True) -> Path:
        """Ready the folder for computing: keep partial work of this key (unless ``resume`` is
        false), remove anything else.

        Raises:
            ValueError: the folder holds files but no stage marker: not ours to empty.
        """
        started = self.directory / STARTED
        resumable = resume and started.is_file() and started.read_text() == self.key and not (self.directory / RECORD).exists()
        if not resumable and self.directory.exists():
            ours = started.is_file() or (self.directory / RECORD).is_file()
            if not ours and any(self.directory.iterdir()):
                raise ValueError(
                    f"{self.directory} holds files that no sae-lens-match stage wrote (or an older version "
                    "did); move them away or choose another folder."
                )
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_text(started, self.key)
        return self.directory

    def finish(self, **facts: Any) -> None:
        """Record the key and a checksum of every file in the folder (and any ``facts``)."""
        files = {
            f.relative_to(self.directory).as_posix(): sha256_file(f)
            for f in sorted(self.directory.rglob("*"))
            if f.is_file() and f.name not in (RECORD, STARTED)
        }
        write_json(self.directory / RECORD, {"key": self.key, "files": files, **facts})
