"""Hostile or broken artifacts cost bounded time and memory, never crash the process that serves,
and are refused with one clear line. Every artifact here is built by the test itself from a
small real booster: edited trees, nested UBJSON, an absurd width, compression bombs."""

from __future__ import annotations

import bz2
import io
import json
import random
import re
import resource
import struct
import subprocess
import sys
import tarfile
import time

import httpx
import numpy as np
import pytest
import xgboost as xgb

from l2c import artifact
from l2c.artifact import ArtifactError
from l2c.serving import sandbox
from l2c.serving.runtime_api import EndpointNotFound, Route, RuntimeApp, Variant
from l2c.serving.server import serve_command, start_in_thread

MIB = 1024 * 1024
# What a clear reason never shows: a Python traceback or XGBoost's time and C++ source path.
NOT_CLEAR = re.compile(r"Traceback|File \"|\[\d\d:\d\d:\d\d\]|\S+\.(cc|h|py):\d+|/workspace/|/__w/")
# A loose bound: each check below takes 0.1 to 4 s on an idle two-core machine (the memory
# eater until it reaches the check's memory limit).
CHECK_SECONDS = 15.0


@pytest.fixture(scope="module", autouse=True)
def fork_server():
    """Started once for the module, so no check's time includes importing XGBoost."""
    sandbox.warm_up()


def assert_one_clear_line(reason: str) -> None:
    assert reason and "\n" not in reason and not NOT_CLEAR.search(reason), reason


# --------------------------------------------------------------------------- crafted artifacts


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 4))
    return xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(features, label=features[:, 0]), 3)


def as_json(booster: xgb.Booster) -> dict:
    return json.loads(bytes(booster.save_raw(raw_format="json")))


def first_tree(document: dict) -> dict:
    return document["learner"]["gradient_booster"]["model"]["trees"][0]


def out_of_range_split(booster: xgb.Booster, feature: int = 100_000_000) -> bytes:
    document = as_json(booster)
    first_tree(document)["split_indices"][0] = feature
    return json.dumps(document).encode()


def _ubj_key(name: bytes) -> bytes:
    return b"L" + struct.pack(">q", len(name)) + name  # XGBoost writes key lengths as int64


def unclosed_ubjson(depth: int = 300) -> bytes:
    """A version XGBoost 3.2 accepts, then ``[[[[...`` never closed: XGBoost's parser grows
    without bound on it (gigabytes within seconds)."""
    return b"{" + _ubj_key(b"version") + b"[i\x03i\x02i\x00]" + _ubj_key(b"learner") + b"[" * depth


def deeply_nested_ubjson(depth: int = 100_000) -> bytes:
    """Balanced but 100,000 arrays deep: XGBoost's recursive parser overflows its stack."""
    return b"{" + _ubj_key(b"learner") + b"[" * depth + b"]" * depth + _ubj_key(b"version") + b"[i\x03i\x02i\x00]}"


def wide(booster: xgb.Booster, num_feature: int = 250_000_000) -> bytes:
    document = as_json(booster)
    document["learner"]["learner_model_param"]["num_feature"] = str(num_feature)
    return json.dumps(document).encode()


def tarball(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def bzip2_bomb(
    declared_size: int, starts_with: bytes = b"", name: str = "xgboost-model", zeros: int | None = None
) -> bytes:
    """A bzip2 tar whose member declares ``declared_size`` bytes, of which ``zeros`` (all, by
    default) follow ``starts_with``. bzip2 files may be a series of streams, so one compressed
    MiB of zeros repeated makes a gigabyte in a few kilobytes, built in milliseconds."""
    info = tarfile.TarInfo(name)
    info.size = declared_size
    zeros = declared_size - len(starts_with) if zeros is None else zeros
    mib_of_zeros = bz2.compress(bytes(MIB), 9)
    parts = [bz2.compress(info.tobuf(format=tarfile.GNU_FORMAT) + starts_with)]
    parts += [mib_of_zeros] * (zeros // MIB)
    tail = bytes(zeros % MIB)
    if zeros + len(starts_with) == declared_size:  # complete: padding and the end-of-archive blocks
        tail += bytes((-declared_size) % 512 + 1024)
    parts.append(bz2.compress(tail))
    return b"".join(parts)


# --------------------------------------------------------------------------- the crashes are real


def run_xgboost_in_a_fresh_process(tmp_path, booster_data: bytes, predict: bool) -> int:
    path = tmp_path / "model.bin"
    path.write_bytes(booster_data)
    code = (
        "import sys, numpy, xgboost\n"
        "booster = xgboost.Booster()\n"
        f"booster.load_model(bytearray(open({str(path)!r}, 'rb').read()))\n"
        + ("booster.inplace_predict(numpy.zeros((1, 4), numpy.float32))\n" if predict else "")
    )
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, timeout=60).returncode


def test_the_crafted_boosters_really_crash_xgboost_when_loaded_unchecked(tmp_path, booster):
    # Without the check these kill the process: what the sandbox protects the servers from.
    assert run_xgboost_in_a_fresh_process(tmp_path, deeply_nested_ubjson(), predict=False) == -11
    assert run_xgboost_in_a_fresh_process(tmp_path, out_of_range_split(booster), predict=True) == -11


# --------------------------------------------------------------------------- the check


def hostile_artifacts(booster) -> dict[str, tuple[bytes, str]]:
    """name -> (model.tar.gz bytes, the reason the check must give)."""
    return {
        "crashes XGBoost's parser": (
            tarball(("xgboost-model", deeply_nested_ubjson())),
            r"^XGBoost crashed while loading the model \(signal 11, SIGSEGV\)$",
        ),
        "eats memory in XGBoost's parser": (
            tarball(("xgboost-model", unclosed_ubjson())),
            r"^(XGBoost crashed while loading the model \(signal 6, SIGABRT\)|loading the model needed more memory .*)$",
        ),
        "splits on a feature it does not have": (
            tarball(("xgboost-model", out_of_range_split(booster))),
            r"^node 0 of tree 0 splits on feature 100000000, but the model has 4 features$",
        ),
        "splits on the feature just past its width": (
            tarball(("xgboost-model", out_of_range_split(booster, feature=4))),
            r"^node 0 of tree 0 splits on feature 4, but the model has 4 features$",
        ),
        "declares 250 million features": (
            tarball(("xgboost-model", wide(booster))),
            r"^the booster declares 250000000 features, over the 1048576-feature limit",
        ),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "crashes XGBoost's parser",
        "eats memory in XGBoost's parser",
        "splits on a feature it does not have",
        "splits on the feature just past its width",
        "declares 250 million features",
    ],
)
def test_a_hostile_booster_is_refused_in_a_child_with_one_clear_line(booster, kind):
    data, expected = hostile_artifacts(booster)[kind]
    verdict = sandbox.check_artifact(data)
    assert not verdict.ok
    assert re.match(expected, verdict.reason), verdict.reason
    assert_one_clear_line(verdict.reason)
    assert verdict.seconds < CHECK_SECONDS
    assert verdict.peak_memory_bytes < 2 * 1024 * MIB  # the child's memory limit held
    # This process survived and still checks (and loads) a good artifact.
    good = tarball(("xgboost-model", artifact.booster_bytes(booster)))
    assert sandbox.check_artifact(good).ok
    assert sandbox.load_checked(good).num_features == 4


def test_a_cycle_and_a_child_outside_the_tree_are_refused_by_the_structural_check(booster):
    looped, outside = as_json(booster), as_json(booster)
    first_tree(looped)["left_children"][0] = 0
    first_tree(outside)["right_children"][0] = 1_000_000
    for document, expected in ((looped, "points to node 0"), (outside, "points to node 1000000")):
        verdict = sandbox.check_artifact(json.dumps(document).encode(), is_tarball=False)
        assert not verdict.ok and expected in verdict.reason
        assert_one_clear_line(verdict.reason)


def test_a_good_booster_passes_and_its_check_is_cheap(booster):
    data = tarball(("xgboost-model", artifact.booster_bytes(booster)))
    sandbox.warm_up()
    verdicts = [sandbox.check_artifact(data) for _ in range(3)]
    assert all(v.ok and v.reason == "" for v in verdicts)
    assert min(v.seconds for v in verdicts) < 2.0  # tens of milliseconds here: a fork, not a new interpreter


# --------------------------------------------------------------------------- bounded unpacking


def test_a_member_declaring_more_than_the_limit_is_refused_before_any_unpacking():
    bomb = bzip2_bomb(4 * 1024 * MIB, zeros=16 * MIB)  # 4 GiB declared: a few hundred bytes
    assert len(bomb) < 4096
    started = time.monotonic()
    with pytest.raises(ArtifactError, match=r"^'xgboost-model' is 4294967296 bytes, over the 536870912-byte limit$"):
        artifact.read_tarball_member(bomb)
    assert time.monotonic() - started < 1.0


def test_an_ignored_dot_file_cannot_make_the_reader_unpack_gigabytes_to_skip_it():
    bomb = bzip2_bomb(1024 * MIB, name=".padding", zeros=16 * MIB)  # the container ignores dot files
    started = time.monotonic()
    with pytest.raises(ArtifactError, match=r"^the archive's entries add up to more than \d+ bytes$"):
        artifact.read_tarball_member(bomb)
    assert time.monotonic() - started < 1.0


def test_a_500_mib_member_of_zeros_is_refused_from_its_first_bytes():
    bomb = bzip2_bomb(500 * MIB)
    assert len(bomb) < 64 * 1024
    started, peak_before = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ArtifactError, match="not in XGBoost's native JSON/UBJSON format"):
        artifact.read_tarball_member(bomb)
    assert time.monotonic() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 64 * 1024  # KiB: nothing unpacked


def test_a_500_mib_member_that_looks_like_json_costs_its_unpacking_in_the_child_only():
    bomb = bzip2_bomb(500 * MIB, starts_with=b'{"version": [3, 2, 0], "learner": ')
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    verdict = sandbox.check_artifact(bomb)
    assert not verdict.ok and verdict.reason == "the JSON model file has no readable 'version' field"
    assert_one_clear_line(verdict.reason)
    assert verdict.seconds < 30.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 64 * 1024  # this process held none of it


def test_a_huge_archive_of_empty_entries_is_refused_after_the_entry_limit():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for number in range(artifact.MAX_ARCHIVE_MEMBERS + 1):
            tar.addfile(tarfile.TarInfo(f".empty-{number}"), io.BytesIO(b""))
    with pytest.raises(ArtifactError, match=f"more than {artifact.MAX_ARCHIVE_MEMBERS} entries"):
        artifact.read_tarball_member(buffer.getvalue())


# --------------------------------------------------------------------------- one line, in-process


def test_load_booster_bytes_turns_every_failure_into_one_clear_line(booster):
    no_version = as_json(booster)
    no_version["version"] = []
    no_learner = {"version": [3, 2, 0]}
    for data in (
        json.dumps(no_version).encode(),
        json.dumps(no_learner).encode(),
        b'{"version": [3, 2, 0]',
        b"{" + b'"a": [' * 100_000,
        wide(booster),
    ):
        with pytest.raises(ArtifactError) as caught:
            artifact.load_booster_bytes(data)
        assert_one_clear_line(str(caught.value))


def test_a_booster_at_the_width_limit_loads_and_one_past_it_is_refused(booster):
    assert artifact.load_booster_bytes(wide(booster, artifact.MAX_FEATURES)).num_features == artifact.MAX_FEATURES
    with pytest.raises(ArtifactError, match="1048577 features, over the 1048576-feature limit"):
        artifact.load_booster_bytes(wide(booster, artifact.MAX_FEATURES + 1))


def test_l2c_serve_refuses_a_crashing_booster_with_one_line(tmp_path, booster, capsys):
    (tmp_path / "model.tar.gz").write_bytes(tarball(("xgboost-model", deeply_nested_ubjson())))
    assert serve_command(str(tmp_path), port=0) == 1
    printed = capsys.readouterr()
    assert printed.out == "error: XGBoost crashed while loading the model (signal 11, SIGSEGV)\n"
    assert "Traceback" not in printed.err


# --------------------------------------------------------------------------- the runtime


class CountingControlPlane:
    region = "eu-west-1"

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.objects: dict[str, bytes] = {}
        self.fetches: dict[str, int] = {}

    def account_id(self) -> str:
        return "123456789012"

    def resolve(self, name: str) -> Route:
        if name not in self.routes:
            raise EndpointNotFound(name)
        return self.routes[name]

    def fetch(self, url: str) -> bytes:
        self.fetches[url] = self.fetches.get(url, 0) + 1
        return self.objects[url]

    def add(self, name: str, data: bytes, etag: str = '"1"') -> None:
        url = f"s3://models/{name}.tar.gz"
        self.objects[url] = data
        self.routes[name] = Route(name, f"{name}-config", (Variant("AllTraffic", 1.0, url, etag),))


def test_the_runtime_survives_a_bad_artifact_checks_it_once_and_keeps_serving_the_others(booster):
    plane = CountingControlPlane()
    plane.add("good", tarball(("xgboost-model", artifact.booster_bytes(booster))))
    plane.add("crash", tarball(("xgboost-model", deeply_nested_ubjson())))
    plane.add("wide", tarball(("xgboost-model", wide(booster))))
    app = RuntimeApp(control_plane=plane, refresh_seconds=0.0, rng=random.Random(0))
    with start_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:

        def invoke(name: str) -> httpx.Response:
            return client.post(
                f"/endpoints/{name}/invocations", content=b"1,2,3,4", headers={"Content-Type": "text/csv"}
            )

        assert invoke("good").status_code == 200
        for name, reason in (
            ("crash", "XGBoost crashed while loading the model (signal 11, SIGSEGV)"),
            ("wide", "the booster declares 250000000 features"),
        ):
            answers = [invoke(name) for _ in range(3)]
            for answer in answers:
                assert answer.status_code == 424 and answer.headers["x-amzn-errortype"] == "ModelError"
                assert answer.json()["OriginalStatusCode"] == 500
                assert answer.json()["OriginalMessage"].startswith(f"Unable to load model: {reason}")
                assert_one_clear_line(answer.json()["OriginalMessage"])
            assert plane.fetches[f"s3://models/{name}.tar.gz"] == 1  # fetched and checked once, then remembered
            assert invoke("good").status_code == 200
        # New model data (a new ETag) is a new artifact version: checked again, and now it serves.
        plane.add("crash", tarball(("xgboost-model", artifact.booster_bytes(booster))), etag='"2"')
        assert invoke("crash").status_code == 200
        assert plane.fetches["s3://models/crash.tar.gz"] == 2
