"""Creates N files in one process (os.open, os.write, os.close), the fast creator of
scripts/bench-scale.sh: one `touch` process per file would measure fork and exec instead.

Usage:
  python3 scripts/lib/mkfiles.py tree ROOT N SIZE   ROOT/d0000/f000 ... : directories of 1000
  python3 scripts/lib/mkfiles.py flat DIR N SIZE    DIR/f0000000 ... : all N in one directory
SIZE bytes of non-zero data per file (0: empty files).
"""
import os
import sys

mode, root, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = bytes(range(256)) * (size // 256) + bytes(size % 256)
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
os.makedirs(root, exist_ok=True)
if mode == "tree":
    for i in range(n):
        d, f = divmod(i, 1000)
        if f == 0:
            os.mkdir(f"{root}/d{d:04d}")
        fd = os.open(f"{root}/d{d:04d}/f{f:03d}", flags, 0o644)
        if size:
            os.write(fd, data)
        os.close(fd)
elif mode == "flat":
    for i in range(n):
        fd = os.open(f"{root}/f{i:07d}", flags, 0o644)
        if size:
            os.write(fd, data)
        os.close(fd)
else:
    sys.exit(__doc__)
