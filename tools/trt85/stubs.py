# Writes C stubs + version scripts for libcublas.so.11, libcublasLt.so.11, libcudnn.so.8 so that
# libnvinfer_plugin.so.8 (needed by libnvonnxparser.so.8) loads without the real CUDA 11 math libraries.
import os
import subprocess
import sys

plugin, out = sys.argv[1], sys.argv[2]
syms = subprocess.run(["nm", "-D", "--undefined-only", plugin], capture_output=True, text=True).stdout.split()
groups = {"libcublas.so.11": [], "libcublasLt.so.11": [], "libcudnn.so.8": []}
for s in syms:
    if "@" in s:
        name, ver = s.split("@", 1)
        if ver in groups:
            groups[ver].append(name)
for lib, names in groups.items():
    c = os.path.join(out, lib + ".c")
    v = os.path.join(out, lib + ".map")
    with open(c, "w") as f:
        for n in names:
            if n == "cudnnGetErrorString":
                f.write(f'const char* {n}(int s){{return "stub";}}\n')
            else:
                f.write(f"int {n}(void){{return 1;}}\n")
    with open(v, "w") as f:
        f.write("{} {{ global: {} local: *; }};\n".format(lib, "".join(n + "; " for n in names)))
    r = subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O1",
            c,
            "-o",
            os.path.join(out, lib),
            "-Wl,-soname," + lib,
            "-Wl,--version-script=" + v,
        ]
    )
    print(lib, len(names), "rc", r.returncode)
