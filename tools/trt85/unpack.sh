#!/usr/bin/env bash
# On the GPU machine: rebuild TensorRT 8.5.3.1 from the parts in /tmp/parts and build its Python bindings.
set -euo pipefail
T=/tmp/trt; S=$(cd "$(dirname "$0")" && pwd); mkdir -p $T/lib $T/obj $T/site/tensorrt
if [ ! -f $T/lib/libnvinfer.so.8 ]; then
  cat /tmp/parts/c* | tar -x -C $T/lib && (cd $T/lib && for f in *.xz; do xz -d -T0 "$f"; done)
fi
python3 "$S/stubs.py" $T/lib/libnvinfer_plugin.so.8 $T/lib
PYINC=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
EXT=$(python3 -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
P=$S/src/python; INC="-I$S/inc -I$P/include -I$P/docstrings -I/usr/local/cuda/include -I$S/pybind11 -I$PYINC"
ls $P/src/*.cpp $P/src/infer/*.cpp $P/src/parsers/*.cpp | xargs -P "$(nproc)" -I{} sh -c \
  'g++ -w -O2 -std=c++17 -fPIC -fvisibility=hidden '"$INC"' -c {} -o '"$T"'/obj/$(basename {} .cpp).o'
g++ -shared -o $T/site/tensorrt/tensorrt$EXT $T/obj/*.o -L$T/lib -l:libnvinfer.so.8 -l:libnvonnxparser.so.8 \
  -l:libnvinfer_plugin.so.8 -l:libnvparsers.so.8 -Wl,-rpath,$T/lib
# The wheel's own __init__.py (OSS python/packaging) after its library loading: it defines nptype, volume and the
# context managers the bindings' users (engine_factory's runtime: trt.nptype) rely on. The stand-ins load first.
python3 - "$S/src/python/packaging/tensorrt/__init__.py" "$T" > $T/site/tensorrt/__init__.py <<'PY'
import sys
src, lib = open(sys.argv[1]).read(), sys.argv[2] + "/lib/"
body = src[src.index("from .tensorrt import *"):].replace("##TENSORRT_VERSION##", "8.5.3.1")
print("import ctypes\nfor _l in " + repr(("libcublas.so.11", "libcublasLt.so.11", "libcudnn.so.8", "libnvinfer.so.8",
      "libnvinfer_plugin.so.8", "libnvonnxparser.so.8", "libnvparsers.so.8")) + ":\n"
      "    ctypes.CDLL(" + repr(lib) + " + _l, mode=ctypes.RTLD_GLOBAL)\n" + body)
if "__version__" not in body:
    print('__version__ = "8.5.3.1"')
PY
PYTHONPATH=$T/site python3 -c "import tensorrt as t; t.nptype(t.float16); print('tensorrt', t.__version__, 'ready in /tmp/trt/site')"
