#!/usr/bin/env bash
# Build llama-cpp-python (pinned in pyproject.toml) for this CPU, once, into a wheel cache.
# It is the one dependency outside the hashed requirements.lock: a wheel built here cannot match
# the registry's sdist hash. scripts/install.sh installs it from this cache with --no-deps (its
# own dependencies are in the lock).
#
# Why not a plain `pip install`: llama.cpp's default native build (-march=native) enables AMX
# kernels on CPUs that report AMX, and in VMs that do not grant AMX state to processes the
# first decode dies with a general protection fault. We build with GGML_NATIVE=OFF and enable
# the instruction sets this CPU reports (AVX2/FMA/F16C, AVX-512 and VNNI where present), never AMX.
# The wheel is cached per instruction-set combination, so a laptop and a server never share one.
#
# Usage: scripts/build-llama.sh PYTHON  -> prints the wheel directory to use with --find-links
set -euo pipefail
PY=${1:?usage: build-llama.sh PYTHON}
VERSION=$(grep -oE '"llama-cpp-python==[^"]+"' "$(dirname "$0")/../pyproject.toml" | cut -d= -f3 | tr -d '"')
[[ -n "$VERSION" ]] || { echo "build-llama.sh: no llama-cpp-python==VERSION pin in pyproject.toml" >&2; exit 1; }
flags=$(grep -m1 -E '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }

args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
args+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF"
has sse4_2 && args+=" -DGGML_SSE42=ON"
has avx && args+=" -DGGML_AVX=ON"
if has avx2; then args+=" -DGGML_AVX2=ON"; fi
has fma && args+=" -DGGML_FMA=ON"
has f16c && args+=" -DGGML_F16C=ON"
has bmi2 && args+=" -DGGML_BMI2=ON"
has avx_vnni && args+=" -DGGML_AVX_VNNI=ON"
if has avx512f && has avx512bw && has avx512dq && has avx512vl; then
  args+=" -DGGML_AVX512=ON"
  has avx512vbmi && args+=" -DGGML_AVX512_VBMI=ON"
  has avx512_vnni && args+=" -DGGML_AVX512_VNNI=ON"
  has avx512_bf16 && args+=" -DGGML_AVX512_BF16=ON"
fi

key=$(printf '%s %s %s' "$VERSION" "$args" "$(uname -m)" | sha1sum | cut -c1-12)
wheels="${COACHBOT_CACHE_DIR:-$HOME/.cache/coachbot}/wheels/llama-$key"
if ! ls "$wheels"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo ">> Building llama-cpp-python $VERSION for this CPU (once; about 7 minutes on 2 cores)" >&2
  echo ">> CMAKE_ARGS: $args" >&2
  mkdir -p "$wheels"
  CMAKE_ARGS="$args" "$PY" -m pip wheel --disable-pip-version-check -q --no-deps \
    --no-cache-dir "llama-cpp-python==$VERSION" -w "$wheels" >&2
fi
echo "$wheels"
