"""Files attached to a run's study and trials (architecture drawings, lineage tree, Pareto plot).

Files go into an Optuna ``FileSystemArtifactStore``; their metadata goes where Optuna and
optuna-dashboard look for it: ``artifacts:<id>`` system attributes of the study (study files) or
of a trial (files attached when the trial is created), and the study's
``dashboard:artifacts:<trial id>:<id>`` attributes for files added to a trial after it finished
(storages refuse to change a finished trial's own attributes). A file whose name is already
attached replaces that artifact's content under the same id, so repeating an upload adds nothing.
Only Optuna's public storage API is used.
"""
from __future__ import annotations

import json
import mimetypes
import uuid
from pathlib import Path
from typing import Any, Mapping

import optuna

from morphnas.search.errors import LeaderboardError

ARTIFACTS_PREFIX = "artifacts:"
DASHBOARD_PREFIX = "dashboard:artifacts:"


class Artifacts:
    """The artifact store of one study: ``study_id`` in ``storage``, files under ``directory``."""

    def __init__(self, storage: optuna.storages.BaseStorage, study_id: int, directory: str | Path):
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.storage = storage
        self.study_id = study_id
        self.store = optuna.artifacts.FileSystemArtifactStore(str(directory))

    def new_trial_attr(self, path: str | Path) -> tuple[str, str]:
        """Store ``path``; the system attribute (key, meta JSON) that attaches it to a trial being created."""
        return self._store_file(check_file(path))

    def upload_to_trial(self, trial_id: int, path: str | Path) -> str:
        """Attach a file to a finished trial; returns the artifact id."""
        path = check_file(path)
        names = self.names(trial_id)
        if path.name in names:
            return self._overwrite(names[path.name], path)
        key, meta = self._store_file(path)
        artifact_id = key[len(ARTIFACTS_PREFIX):]
        self.storage.set_study_system_attr(self.study_id, f"{DASHBOARD_PREFIX}{trial_id}:{artifact_id}", meta)
        return artifact_id

    def upload_to_study(self, path: str | Path) -> str:
        """Attach a file to the study (lineage tree, Pareto plot)."""
        path = check_file(path)
        names = self.names()
        if path.name in names:
            return self._overwrite(names[path.name], path)
        key, meta = self._store_file(path)
        self.storage.set_study_system_attr(self.study_id, key, meta)
        return key[len(ARTIFACTS_PREFIX):]

    def names(self, trial_id: int | None = None) -> dict[str, str]:
        """Filename -> artifact id of the study's (or a trial's) artifacts."""
        study_attrs = self.storage.get_study_system_attrs(self.study_id)
        if trial_id is None:
            return artifact_names(study_attrs, ARTIFACTS_PREFIX)
        return {**artifact_names(study_attrs, f"{DASHBOARD_PREFIX}{trial_id}:"),
                **artifact_names(self.storage.get_trial_system_attrs(trial_id), ARTIFACTS_PREFIX)}

    def _overwrite(self, artifact_id: str, path: Path) -> str:
        with open(path, "rb") as f:
            self.store.write(artifact_id, f)
        return artifact_id

    def _store_file(self, path: Path) -> tuple[str, str]:
        artifact_id = str(uuid.uuid4())
        mimetype, encoding = mimetypes.guess_type(path.name)
        self._overwrite(artifact_id, path)
        meta = {"artifact_id": artifact_id, "filename": path.name,
                "mimetype": mimetype or "application/octet-stream", "encoding": encoding}
        return ARTIFACTS_PREFIX + artifact_id, json.dumps(meta)


def check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"artifact file {str(path)!r} does not exist")
    return path


def artifact_names(system_attrs: Mapping[str, Any], prefix: str) -> dict[str, str]:
    out = {}
    for key, value in system_attrs.items():
        if key.startswith(prefix):
            meta = json.loads(value) if isinstance(value, str) else value
            if meta:  # a deleted artifact leaves a null entry behind
                out[meta["filename"]] = meta["artifact_id"]
    return out
