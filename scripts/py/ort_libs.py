"""Copies the shared libraries out of ONNX Runtime's and NVIDIA's wheels.

Used by the Dockerfile: the image needs ONNX Runtime's C library (and, for
the GPU image, its CUDA provider and the CUDA/cuDNN runtime libraries), not
the Python packages around them. Takes every `onnxruntime/capi/lib*.so*`
except the Python binding and the TensorRT provider, and every `nvidia/<package>/lib/*.so*`, flat into
one folder, so one LD_LIBRARY_PATH entry finds them all.

Usage: ort_libs.py WHEEL_DIR OUT_DIR      (stdlib only)
"""

import re
import sys
import zipfile
from pathlib import Path

LIBRARY = re.compile(r"^(onnxruntime/capi/lib[^/]+|nvidia/[^/]+/lib/[^/]+)\.so(\.[0-9]+)*$")


def main() -> None:
    wheels, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    copied = 0
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                # TensorRT's provider needs TensorRT, which is not shipped.
                if LIBRARY.match(name) and "tensorrt" not in name:
                    (out / Path(name).name).write_bytes(archive.read(name))
                    copied += 1
    if copied == 0:
        sys.exit(f"no shared libraries found in the wheels under {wheels}")
    print(f"ort_libs: {copied} libraries into {out}")


if __name__ == "__main__":
    main()
