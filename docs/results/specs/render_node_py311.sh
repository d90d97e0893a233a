#!/usr/bin/env bash
# A Blender render node whose own Python is not 3.11 (bpy 4.2 ships for CPython 3.11 only):
# unpack a CPython 3.11 from Debian packages, the cp311 wheels synthloop's renderer imports, and
# the bpy wheel's files into a prefix (never into /), and write a launcher for
# SYNTHLOOP_BLENDER_PYTHON (synthloop.generators.blender_renderer.worker_python).
#
# Usage: render_node_py311.sh PACK PREFIX
#   PACK/debs/*.deb    python3.11-minimal libpython3.11-minimal libpython3.11-stdlib and the X11/GL
#                      client libraries bpy links (apt-get download ..., see the render results doc)
#   PACK/whl311/*.whl  cp311 wheels of synthloop's render-time imports (numpy, pydantic, PyYAML, ...)
#   PACK/bpy.tar.zst   the bpy package folder (tar | zstd), or its parts PACK/bpy.tar.zst.part-*
#   PACK/cubins/kernel_sm_*.cubin.zst  (optional) Cycles CUDA kernels compiled ahead of time for the
#                      node's GPU (render_node_pack.sh SM=90): copied into Cycles' lib/, so that
#                      the first frame does not wait for the driver to JIT-compile the PTX
# Prints the launcher's path. Needs dpkg, tar and a python3 (any version) to unzip the wheels.
set -euo pipefail
PACK=$(cd "$1" && pwd)
PREFIX=$2
mkdir -p "$PREFIX/root" "$PREFIX/site"
for deb in "$PACK"/debs/*.deb; do dpkg -x "$deb" "$PREFIX/root"; done
for whl in "$PACK"/whl311/*.whl; do python3 -m zipfile -e "$whl" "$PREFIX/site"; done
LIBS="$PREFIX/root/usr/lib/x86_64-linux-gnu:$PREFIX/root/lib/x86_64-linux-gnu"
cat > "$PREFIX/python3.11" <<EOF
#!/bin/sh
# CPython 3.11 from Debian packages with bpy (written by render_node_py311.sh)
export PYTHONHOME='$PREFIX/root/usr'
export PYTHONPATH='$PREFIX/site'\${PYTHONPATH:+:\$PYTHONPATH}
export LD_LIBRARY_PATH='$LIBS'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
exec '$PREFIX/root/usr/bin/python3.11' "\$@"
EOF
chmod +x "$PREFIX/python3.11"
if [ ! -d "$PREFIX/site/bpy" ]; then
  parts=("$PACK"/bpy.tar.zst*)
  unzst='import sys, zstandard; zstandard.ZstdDecompressor(max_window_size=1 << 27).copy_stream(sys.stdin.buffer, sys.stdout.buffer)'
  cat "${parts[@]}" | "$PREFIX/python3.11" -c "$unzst" | tar -xf - -C "$PREFIX/site"
fi
if compgen -G "$PACK/cubins/kernel_sm_*.cubin.zst" > /dev/null; then
  cp "$PACK"/cubins/kernel_sm_*.cubin.zst "$PREFIX/site/bpy/4.2/scripts/addons_core/cycles/lib/"
fi
"$PREFIX/python3.11" -c "import bpy, numpy; print('bpy', bpy.app.version_string, 'numpy', numpy.__version__)" >&2
echo "$PREFIX/python3.11"
