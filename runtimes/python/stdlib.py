"""Writes out the CPython standard library that componentize-py carries (a
zstd-compressed tar inside its native module) into DIR/lib/python3.X: the
directory Kiln mounts at /python for Python functions.

Usage: stdlib.py COMPONENTIZE_PY_NATIVE_MODULE DIR
"""

import io
import sys
import tarfile

import zstandard

MAGIC = b"\x28\xb5\x2f\xfd"


def main(native, out):
    data = open(native, "rb").read()
    decompressor = zstandard.ZstdDecompressor()
    at = 0
    while (at := data.find(MAGIC, at) + 1) > 0:
        try:
            unpacked = decompressor.decompressobj().decompress(data[at - 1 : at - 1 + (64 << 20)])
        except zstandard.ZstdError:
            continue
        if unpacked[257:262] != b"ustar":
            continue
        archive = tarfile.open(fileobj=io.BytesIO(unpacked))
        names = archive.getnames()
        if "traceback.py" in names and "os.py" in names:
            archive.extractall(out, filter="data")
            print(f"{len(names)} files of the standard library in {out}", file=sys.stderr)
            return
    sys.exit(f"no standard library found in {native}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
