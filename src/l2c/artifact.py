"""The SageMaker model artifact: ``model.tar.gz`` holding exactly one native XGBoost booster.

The built-in XGBoost container untars the artifact into ``/opt/ml/model`` and tries *every*
regular, non-dot file there, first with ``pickle.load`` and then as a native booster; more than
one file becomes an ensemble. So what we write, and what :func:`load_artifact` accepts, is one
file named ``xgboost-model`` at the root of the tarball, in XGBoost's native format, saved by the
same major.minor version the container runs. Anything else is refused with a message that says
why, before it reaches S3 or a server.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

from l2c.errors import L2CError
from l2c.versions import CONTAINER_XGBOOST_VERSION, major_minor

BOOSTER_FILENAME = "xgboost-model"
TARBALL_NAME = "model.tar.gz"
# A booster for these demos is tens of kilobytes; a cap keeps a hostile tarball from
# filling a disk or the memory of the server that unpacks it.
MAX_BOOSTER_BYTES = 512 * 1024 * 1024
# Everything an archive unpacks to (every member's data and header) passes through the
# decompressor, so a few kilobytes of bzip2 could otherwise cost minutes of CPU: the member
# limit plus room for headers and a few dot files bounds that work.
MAX_UNPACKED_BYTES = MAX_BOOSTER_BYTES + 16 * 1024 * 1024
# The container's archive holds one model file (plus perhaps a folder entry and dot files);
# thousands of empty members are only a way to make the reader spin.
MAX_ARCHIVE_MEMBERS = 256
# Every request row is padded to the model's width and XGBoost gives each prediction thread a
# feature vector of that width, so the width is what one tiny request costs. A 6 MB
# InvokeEndpoint body cannot carry more than ~3M values ("0," per value) anyway, and a row of
# 1,048,576 floats is 4 MiB: a wider model is refused when loading instead of costing gigabytes
# per request.
MAX_FEATURES = 1_048_576
NOT_ENOUGH_MEMORY = "there is not enough memory"

_PICKLE_PREFIXES = (b"\x80",)  # pickle protocol 2+ (joblib dumps included) opens with PROTO


class ArtifactError(L2CError, ValueError):
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
    """Return the single booster file of a tarball, refusing what the container would mis-load.

    The archive is read as a stream, one member at a time, and each member's declared size is
    checked before its data is decompressed: a compression bomb is refused after at most
    :data:`MAX_UNPACKED_BYTES` of work, and only the model file is kept in memory.
    """
    stream = _BoundedReader(_decompressed(tar_bytes), MAX_UNPACKED_BYTES)
    try:
        return _single_model_file(tarfile.open(fileobj=stream, mode="r|"))
    except ArtifactError:
        raise
    except _UnpackedTooMuch:
        raise ArtifactError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES} bytes") from None
    except MemoryError:
        raise ArtifactError(f"{NOT_ENOUGH_MEMORY} to unpack the archive") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError, zlib.error) as err:
        raise ArtifactError(f"not a readable tar archive: {one_line(err)}") from None
    except Exception as err:  # whatever else a malformed archive makes tarfile raise
        raise ArtifactError(f"corrupt tar archive: {one_line(err)}") from None


def _single_model_file(tar: tarfile.TarFile) -> bytes:
    found: bytes | None = None
    model_names, declared = [], 0
    with tar:
        for count, member in enumerate(tar, start=1):
            if count > MAX_ARCHIVE_MEMBERS:
                raise ArtifactError(f"the archive holds more than {MAX_ARCHIVE_MEMBERS} entries")
            _refuse_unsafe_member(member)
            ignored = _is_ignored_by_container(member)
            if not ignored and member.size > MAX_BOOSTER_BYTES:
                raise ArtifactError(f"'{member.name}' is {member.size} bytes, over the {MAX_BOOSTER_BYTES}-byte limit")
            # Skipping an entry means unpacking it: refused from the headers, before the work.
            declared += member.size
            if declared > MAX_UNPACKED_BYTES:
                raise ArtifactError(f"the archive's entries add up to more than {MAX_UNPACKED_BYTES} bytes")
            if ignored:
                continue
            model_names.append(member.name)
            if found is None:
                found = _member_data(tar, member)
    if not model_names:
        raise ArtifactError(f"the archive holds no model file; expected exactly one '{BOOSTER_FILENAME}' at its root")
    if len(model_names) > 1:
        raise ArtifactError(
            f"the archive holds {len(model_names)} model files ({', '.join(sorted(model_names))}); the container "
            f"would load every one and average them as an ensemble. Keep only '{BOOSTER_FILENAME}'."
        )
    return found


def _member_data(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(member)
    if extracted is None:
        raise ArtifactError(f"'{member.name}' cannot be read from the archive")
    # What the file starts with decides whether it can be a booster at all: a bomb of zeros
    # under a model's name is refused before it is unpacked.
    head = extracted.read(2)
    refuse_non_native(head)
    # Read in place: a booster of hundreds of megabytes is held once, not copied.
    data = bytearray(member.size)
    view = memoryview(data)
    view[: len(head)] = head
    got = len(head)
    while got < member.size:  # in slices: tarfile's stream reader builds each read in memory first
        read = extracted.readinto(view[got : got + _READ_SLICE_BYTES])
        if not read:
            raise ArtifactError(f"'{member.name}' is truncated: {got} of {member.size} bytes")
        got += read
    return data


def _decompressed(data: bytes):
    """A file object of the archive's tar stream, decompressed on the fly as it is read."""
    raw = io.BytesIO(data)
    if data.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if data.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if data.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


_READ_SLICE_BYTES = 16 * 1024 * 1024


class _UnpackedTooMuch(Exception):
    pass


class _BoundedReader(io.RawIOBase):
    """Reads at most ``limit`` bytes from a file object, then raises :class:`_UnpackedTooMuch`."""

    def __init__(self, source, limit: int):
        self._source, self._left = source, limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._left + 1
        chunk = self._source.read(min(size, self._left + 1))
        self._left -= len(chunk)
        if self._left < 0:
            raise _UnpackedTooMuch()
        return chunk


def _is_ignored_by_container(member: tarfile.TarInfo) -> bool:
    # The container skips directories and dot files; everything else is a model to it.
    name = member.name.removeprefix("./")
    return member.isdir() or name in ("", ".") or Path(name).name.startswith(".")


def _refuse_unsafe_member(member: tarfile.TarInfo) -> None:
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


def refuse_non_native(data: bytes) -> None:
    """Refuse, from its first bytes, a model file that is not a native JSON/UBJSON booster."""
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


def load_booster_bytes(data: bytes) -> LoadedModel:
    """Load a native booster from bytes after refusing pickles, version drift and huge widths.

    Every failure is an :class:`ArtifactError` with a one-line reason. This runs XGBoost's
    parser on the bytes: a process that must survive hostile boosters checks them with
    :mod:`l2c.serving.sandbox` first.
    """
    try:
        return _load_booster(data)
    except ArtifactError:
        raise
    except MemoryError:
        raise ArtifactError(f"{NOT_ENOUGH_MEMORY} to load the model file") from None
    except Exception as err:  # XGBoost or a malformed document: one line, never a traceback
        if "bad_alloc" in str(err):
            raise ArtifactError(f"{NOT_ENOUGH_MEMORY} to load the model file") from None
        raise ArtifactError(f"XGBoost cannot load the model file: {one_line(err)}") from None


def _load_booster(data: bytes) -> LoadedModel:
    refuse_non_native(data)
    version = saved_version(data)
    if major_minor(version) != major_minor(CONTAINER_XGBOOST_VERSION):
        raise ArtifactError(
            f"the booster was saved by XGBoost {'.'.join(map(str, version))}, but the SageMaker "
            f"container runs {CONTAINER_XGBOOST_VERSION}; retrain with xgboost=={CONTAINER_XGBOOST_VERSION}"
        )
    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    num_features = booster.num_features()
    if num_features > MAX_FEATURES:
        raise ArtifactError(
            f"the booster declares {num_features} features, over the {MAX_FEATURES}-feature limit: every request "
            "row is padded to that width"
        )
    config = json.loads(booster.save_config())["learner"]
    return LoadedModel(
        booster=booster,
        objective=str(config["objective"]["name"]),
        num_features=num_features,
        num_classes=int(config["learner_model_param"].get("num_class", "0")),
        saved_with_version=version,
    )


def load_artifact(path: Path | str) -> LoadedModel:
    """Load a model directory (holding ``model.tar.gz``), a tarball, or a bare booster file."""
    data, is_tarball = read_artifact_file(path)
    return load_artifact_data(data, is_tarball)


def read_artifact_file(path: Path | str) -> tuple[bytes, bool]:
    """The bytes of a model directory's ``model.tar.gz``, a tarball or a booster file, and
    whether they are a tarball; a file over the size limit is refused before it is read."""
    path = Path(path)
    if path.is_dir():
        path = path / TARBALL_NAME
    if not path.is_file():
        raise ArtifactError(f"no artifact at {path}")
    size = path.stat().st_size
    if size > MAX_UNPACKED_BYTES:
        raise ArtifactError(f"{path} is {size} bytes, over the {MAX_UNPACKED_BYTES}-byte limit")
    return path.read_bytes(), path.name.endswith((".tar.gz", ".tgz", ".tar"))


def load_artifact_data(data: bytes, is_tarball: bool) -> LoadedModel:
    return load_booster_bytes(read_tarball_member(data) if is_tarball else data)


def load_artifact_bytes(tar_bytes: bytes) -> LoadedModel:
    """Load ``model.tar.gz`` content, e.g. fetched from S3."""
    return load_booster_bytes(read_tarball_member(tar_bytes))


def saved_version(data: bytes) -> tuple[int, int, int]:
    """The XGBoost version recorded in a JSON or UBJSON booster."""
    if data[:2] == b'{"':
        try:
            version = json.loads(data)["version"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise ArtifactError("the JSON model file has no readable 'version' field") from None
        if not (isinstance(version, list) and len(version) == 3 and all(type(v) is int for v in version)):
            raise ArtifactError("the JSON model file has a malformed 'version' field")
        return tuple(version)  # type: ignore[return-value]
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
        chunk = bytes(self.data[self.pos : self.pos + n])
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


# XGBoost prefixes its messages with the time and the C++ source line that raised them.
_XGBOOST_PREFIX = re.compile(r"^\[\d{2}:\d{2}:\d{2}\] (?:\S+:\d+: )?")


def one_line(err: BaseException) -> str:
    """An exception as one readable line: its first line, without XGBoost's time and source path."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    line = _XGBOOST_PREFIX.sub("", lines[0])
    if isinstance(err, (IndexError, KeyError, TypeError, RecursionError)):
        line = f"malformed model document ({type(err).__name__}: {line})"
    return line[:300]


# --------------------------------------------------------------------------- checking


def predict_like_container(model: LoadedModel, rows: np.ndarray) -> np.ndarray:
    """Predict as the container does for native models: no feature-name validation."""
    dmatrix = xgb.DMatrix(np.asarray(rows, dtype=np.float32))
    return model.booster.predict(dmatrix, validate_features=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
