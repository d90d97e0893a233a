#!/usr/bin/env bash
# Build the pack that render_node_py311.sh unpacks on a render node whose Python is not 3.11, from
# a machine with Debian 12 (apt), a Python 3.11 environment holding bpy 4.2 and synthloop's
# dependencies (`pip install -e .`), gcc and zstd.
#
# Usage: render_node_pack.sh PACK [PART_MB]
#   PACK/debs     CPython 3.11 (Debian 12) and the X11/GL client libraries that bpy links
#   PACK/whl311   cp311 wheels of what the renderer imports (the versions installed here)
#   PACK/bpy.tar.zst.part-*  the bpy package, zstd level 9, in parts of PART_MB MiB (default 56)
#   PACK/cubins   with SM=90 (say) and PTXAS=path/to/ptxas (e.g. from the nvidia-cuda-nvcc-cu12
#                 wheel): Cycles' compute_75 PTX compiled ahead for sm_SM, so that the node's
#                 first frame does not wait for the driver's JIT (which took over 9 minutes on an
#                 H100 host)
# Slimmed for NVIDIA render nodes: no CUDA cubins (sm_90 GPUs JIT the compute_75 PTX; OptiX uses
# its PTX), no AMD (HIP) kernels, no OpenImageDenoise HIP/SYCL devices, and the oneAPI (Intel GPU)
# kernel library replaced by a stub of its six entry points (never called without an Intel GPU).
set -euo pipefail
PACK=$(mkdir -p "$1" && cd "$1" && pwd)
PART_MB=${2:-56}
PY=${PYTHON:-python3.11}
SITE=$("$PY" -c "import importlib.util as u, os; print(os.path.dirname(os.path.dirname(u.find_spec('bpy').origin)))")
mkdir -p "$PACK/debs" "$PACK/whl311"
(cd "$PACK/debs" && apt-get download python3.11-minimal libpython3.11-minimal libpython3.11-stdlib \
  libx11-6 libx11-data libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libice6 libgl1 \
  libglx0 libglvnd0 libxcb1 libxext6 libxau6 libxdmcp6 libbsd0 libmd0 libuuid1 libffi8 libexpat1 zlib1g)
for f in "$PACK"/debs/*%3a*; do [ -e "$f" ] && mv "$f" "${f//%3a/_}"; done
pins=$("$PY" -m pip list --format=freeze | grep -i -E "^(annotated-doc|annotated-types|click|markdown-it-py|mdurl|numpy|openexr|pillow|psutil|pycocotools|pydantic|pydantic_core|pygments|pyyaml|rich|shellingham|typer|typing_extensions|typing-inspection|zstandard)==")
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$PACK/whl311" $pins
stub=$(mktemp -d)
mkdir -p "$stub/oneapi_stub"
cat > "$stub/stub.c" <<'EOF'
/* Stand-in for Cycles' oneAPI (Intel GPU) kernel library on a node without Intel GPUs. */
int oneapi_enqueue_kernel(void) { return 0; }
int oneapi_load_kernels(void) { return 0; }
int oneapi_run_test_kernel(void) { return 0; }
void oneapi_set_error_cb(void) {}
unsigned long oneapi_suggested_gpu_kernel_size(void) { return 0; }
int oneapi_zero_memory_on_device(void) { return 0; }
EOF
gcc -shared -fPIC -O2 -o "$stub/oneapi_stub/libcycles_kernel_oneapi_aot.so" "$stub/stub.c"
tar -cf - -C "$SITE" \
  --exclude='bpy/4.2/scripts/addons_core/cycles/lib/kernel_sm_*' \
  --exclude='bpy/4.2/scripts/addons_core/cycles/lib/kernel_gfx*' \
  --exclude='bpy/lib/libOpenImageDenoise_device_hip*' --exclude='bpy/lib/libOpenImageDenoise_device_sycl*' \
  --exclude='bpy/lib/libcycles_kernel_oneapi_aot.so' bpy \
  -C "$stub" --transform='s,^oneapi_stub/,bpy/lib/,' oneapi_stub/libcycles_kernel_oneapi_aot.so \
  | zstd -q -9 --long=27 -T0 | split -b "${PART_MB}m" - "$PACK/bpy.tar.zst.part-"
rm -rf "$stub"
if [ -n "${SM:-}" ]; then
  mkdir -p "$PACK/cubins"
  ptx=$(mktemp)
  zstd -q -d -c "$SITE/bpy/4.2/scripts/addons_core/cycles/lib/kernel_compute_75.ptx.zst" > "$ptx"
  "${PTXAS:-ptxas}" -arch="sm_$SM" -O3 "$ptx" -o "$ptx.cubin"
  zstd -q -19 -f "$ptx.cubin" -o "$PACK/cubins/kernel_sm_$SM.cubin.zst"
  rm -f "$ptx" "$ptx.cubin"
fi
du -sh "$PACK"/*
