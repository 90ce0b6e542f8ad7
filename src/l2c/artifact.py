"""The SageMaker model artifact: ``model.tar.gz`` holding exactly one native XGBoost booster.

The built-in XGBoost container untars the artifact into ``/opt/ml/model`` and tries *every*
regular, non-dot file there, first with ``pickle.load`` and then as a native booster; more than
one file becomes an ensemble. So what we write, and what :func:`load_artifact` accepts, is one
file named ``xgboost-model`` at the root of the tarball, in XGBoost's native format, saved by the
same major.minor version the container runs. Anything else is refused with a message that says
why, before it reaches S3 or a server.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

from l2c.versions import CONTAINER_XGBOOST_VERSION, major_minor

BOOSTER_FILENAME = "xgboost-model"
TARBALL_NAME = "model.tar.gz"
# A booster for these demos is tens of kilobytes; a cap keeps a hostile tarball from
# filling a disk or the memory of the server that unpacks it.
MAX_BOOSTER_BYTES = 512 * 1024 * 1024

_PICKLE_PREFIXES = (b"\x80",)  # pickle protocol 2+ (joblib dumps included) opens with PROTO


class ArtifactError(ValueError):
    """The artifact would be mis-loaded, or not loaded at all, by the SageMaker container."""


@dataclass(frozen=True)
class LoadedModel:
    """A booster read from an artifact, with what servers and checks need to know about it."""

    booster: xgb.Booster
    objective: str
    num_features: int
    num_classes: int
    saved_with_version: tuple[int, int, int]

    @property
    def is_classifier(self) -> bool:
        return self.objective.startswith(("multi:", "binary:"))


# --------------------------------------------------------------------------- writing


def booster_bytes(booster: xgb.Booster) -> bytes:
    """The booster in UBJSON, XGBoost's default native format since 2.1."""
    return bytes(booster.save_raw(raw_format="ubj"))


def write_tarball(booster: xgb.Booster, tar_path: Path) -> Path:
    """Write ``model.tar.gz`` with ``xgboost-model`` as its only member."""
    data = booster_bytes(booster)
    tar_path = Path(tar_path)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo(BOOSTER_FILENAME)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return tar_path


# --------------------------------------------------------------------------- reading


def read_tarball_member(tar_bytes: bytes) -> bytes:
    """Return the single booster file of a tarball, refusing what the container would mis-load."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ArtifactError(f"not a readable tar archive: {err}") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError, ValueError) as err:
            raise ArtifactError(f"corrupt tar archive: {err}") from None
        model_files = [m for m in members if not _is_ignored_by_container(m)]
        _refuse_unsafe_members(members)
        if not model_files:
            raise ArtifactError(
                f"the archive holds no model file; expected exactly one '{BOOSTER_FILENAME}' at its root"
            )
        if len(model_files) > 1:
            names = ", ".join(sorted(m.name for m in model_files))
            raise ArtifactError(
                f"the archive holds {len(model_files)} model files ({names}); the container would "
                f"load every one and average them as an ensemble. Keep only '{BOOSTER_FILENAME}'."
            )
        member = model_files[0]
        if member.size > MAX_BOOSTER_BYTES:
            raise ArtifactError(f"'{member.name}' is {member.size} bytes, over the {MAX_BOOSTER_BYTES}-byte limit")
        extracted = tar.extractfile(member)
        if extracted is None:
            raise ArtifactError(f"'{member.name}' cannot be read from the archive")
        return extracted.read()


def _is_ignored_by_container(member: tarfile.TarInfo) -> bool:
    # The container skips directories and dot files; everything else is a model to it.
    name = member.name.removeprefix("./")
    return member.isdir() or name in ("", ".") or Path(name).name.startswith(".")


def _refuse_unsafe_members(members: list[tarfile.TarInfo]) -> None:
    for member in members:
        name = member.name.removeprefix("./")
        if member.issym() or member.islnk():
            raise ArtifactError(f"'{member.name}' is a link; the artifact must hold a regular file")
        if name.startswith("/") or ".." in Path(name).parts:
            raise ArtifactError(f"'{member.name}' points outside the model folder")
        if member.isdir() and name not in ("", "."):
            raise ArtifactError(
                f"'{member.name}' is a subfolder; the container only reads files at the root of the archive"
            )
        if not member.isdir() and "/" in name:
            raise ArtifactError(
                f"'{member.name}' sits in a subfolder; the container only reads files at the root of the archive"
            )
        if not (member.isdir() or member.isfile()):
            raise ArtifactError(f"'{member.name}' is not a regular file")


def load_booster_bytes(data: bytes) -> LoadedModel:
    """Load a native booster from bytes after refusing pickles and version drift."""
    if data.startswith(_PICKLE_PREFIXES):
        raise ArtifactError(
            "the model file is a pickle (for example a joblib dump of the scikit-learn wrapper). "
            "The SageMaker container would unpickle it, which runs arbitrary code, and could not "
            "use the wrapper anyway; save the native booster instead (l2c train does)."
        )
    if not data.startswith(b"{"):
        raise ArtifactError(
            "the model file is not in XGBoost's native JSON/UBJSON format "
            "(the legacy binary format was removed in XGBoost 3.1)"
        )
    version = saved_version(data)
    if major_minor(version) != major_minor(CONTAINER_XGBOOST_VERSION):
        raise ArtifactError(
            f"the booster was saved by XGBoost {'.'.join(map(str, version))}, but the SageMaker "
            f"container runs {CONTAINER_XGBOOST_VERSION}; retrain with xgboost=={CONTAINER_XGBOOST_VERSION}"
        )
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as err:
        raise ArtifactError(f"XGBoost cannot load the model file: {_first_line(err)}") from None
    config = json.loads(booster.save_config())["learner"]
    return LoadedModel(
        booster=booster,
        objective=config["objective"]["name"],
        num_features=booster.num_features(),
        num_classes=int(config["learner_model_param"].get("num_class", "0")),
        saved_with_version=version,
    )


def load_artifact(path: Path | str) -> LoadedModel:
    """Load a model directory (holding ``model.tar.gz``), a tarball, or a bare booster file."""
    path = Path(path)
    if path.is_dir():
        path = path / TARBALL_NAME
    if not path.is_file():
        raise ArtifactError(f"no artifact at {path}")
    data = path.read_bytes()
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        data = read_tarball_member(data)
    return load_booster_bytes(data)


def load_artifact_bytes(tar_bytes: bytes) -> LoadedModel:
    """Load ``model.tar.gz`` content, e.g. fetched from S3."""
    return load_booster_bytes(read_tarball_member(tar_bytes))


def saved_version(data: bytes) -> tuple[int, int, int]:
    """The XGBoost version recorded in a JSON or UBJSON booster."""
    if data[:2] == b'{"':
        try:
            return tuple(json.loads(data)["version"])  # type: ignore[return-value]
        except (ValueError, KeyError, TypeError):
            raise ArtifactError("the JSON model file has no readable 'version' field") from None
    return _ubjson_version(data)


def _ubjson_version(data: bytes) -> tuple[int, int, int]:
    # The top-level object ends with the key "version" and a 3-int array; reading just that
    # avoids a UBJSON dependency for one field.
    at = data.rfind(b"version")
    if at < 0:
        raise ArtifactError("the UBJSON model file has no 'version' field")
    reader = _UbjReader(data, at + len(b"version"))
    try:
        values = reader.read_int_array()
    except (IndexError, struct.error, ValueError):
        raise ArtifactError("the UBJSON model file has an unreadable 'version' field") from None
    if len(values) != 3:
        raise ArtifactError("the UBJSON model file has a malformed 'version' field")
    return tuple(values)  # type: ignore[return-value]


class _UbjReader:
    _INT_FORMATS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q"}

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def _take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        if len(chunk) != n:
            raise ValueError("truncated")
        self.pos += n
        return chunk

    def _int(self, marker: bytes) -> int:
        fmt = self._INT_FORMATS.get(marker)
        if fmt is None:
            raise ValueError(f"not an integer marker: {marker!r}")
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def read_int_array(self) -> list[int]:
        if self._take(1) != b"[":
            raise ValueError("not an array")
        item_type = None
        if self.data[self.pos : self.pos + 1] == b"$":
            self._take(1)
            item_type = self._take(1)
        if self.data[self.pos : self.pos + 1] == b"#":
            self._take(1)
            count = self._int(self._take(1))
            return [self._int(item_type or self._take(1)) for _ in range(count)]
        values = []
        while (marker := self._take(1)) != b"]":
            values.append(self._int(marker))
        return values


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__


# --------------------------------------------------------------------------- checking


def predict_like_container(model: LoadedModel, rows: np.ndarray) -> np.ndarray:
    """Predict as the container does for native models: no feature-name validation."""
    dmatrix = xgb.DMatrix(np.asarray(rows, dtype=np.float32))
    return model.booster.predict(dmatrix, validate_features=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
