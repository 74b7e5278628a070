#!/usr/bin/env python3
"""The benchmarks' volume fixture (bench/backup.sh, bench/destinations.sh): 1.14 GiB (1.23 GB) of
deterministic, mixed content (seed 42) written under DIR, one kind of data per subdirectory: logs/
(log-like text), blobs/ (random data), db/ (database-like pages) and small/ (~30,000 small files).
bench/fixture.sh's `bench_kinds` names the same subdirectories.

Usage: fixture.py DIR        fills DIR
       fixture.py --count DIR  prints "<bytes> <files>" of what is under DIR
"""
import os, random, sys


def count(root):
    b = f = 0
    for d, _, names in os.walk(root):
        for n in names:
            b += os.lstat(os.path.join(d, n)).st_size
            f += 1
    print(b, f)


def fill(root):
    rng = random.Random(42)
    MiB = 1 << 20

    def mk(path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    # 1. Log-like text: 24 x 20 MiB, lines drawn from a pool of 200k distinct lines (24 MB, far
    #    larger than gzip's 32 KiB window, so the ratio is that of real logs, not of repetition).
    levels = ["INFO"] * 8 + ["DEBUG"] * 4 + ["WARN", "ERROR"]
    paths = ["/api/v1/items", "/api/v1/orders", "/healthz", "/api/v2/users", "/static/app.js", "/login"]
    words = "alpha beta gamma delta cache miss hit retry upstream timeout connection reset ok".split()
    pool = []
    for i in range(200_000):
        pool.append(
            "2026-11-%02dT%02d:%02d:%02d.%03dZ %-5s [worker-%d] req=%016x method=%s path=%s/%d "
            "status=%d dur=%dms bytes=%d msg=\"%s\"\n" % (
                rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                rng.randint(0, 999), rng.choice(levels), rng.randint(1, 64), rng.getrandbits(64),
                rng.choice(["GET", "GET", "POST", "PUT"]), rng.choice(paths), rng.randint(1, 99999),
                rng.choice([200, 200, 200, 201, 304, 404, 500]), rng.randint(1, 3000),
                rng.randint(0, 1 << 20), " ".join(rng.choices(words, k=rng.randint(2, 8)))))
    pool = [l.encode() for l in pool]
    for n in range(24):
        out, size = [], 0
        while size < 20 * MiB:
            chunk = rng.choices(pool, k=4096)
            out.extend(chunk)
            size += sum(map(len, chunk))
        mk(f"{root}/logs/app-{n:02d}.log", b"".join(out)[: 20 * MiB])

    # 2. Incompressible: 4 x 64 MiB + 16 x 8 MiB of random bytes (media, already-compressed data).
    for n in range(4):
        mk(f"{root}/blobs/big-{n}.bin", rng.randbytes(64 * MiB))
    for n in range(16):
        mk(f"{root}/blobs/mid/{n:02d}.bin", rng.randbytes(8 * MiB))

    # 3. Database-like: 4 x 32 MiB of 8 KiB pages, each partly filled with random records, the rest
    #    zeros (compresses about 2:1).
    for n in range(4):
        pages = []
        for _ in range(32 * MiB // 8192):
            used = rng.randint(1024, 7168)
            pages.append(rng.randbytes(used) + bytes(8192 - used))
        mk(f"{root}/db/table-{n}.dat", b"".join(pages))

    # 4. Many small files: 30,000 files of 256 B - 12 KiB in 300 directories, 2/3 text, 1/3 binary.
    for n in range(30_000):
        size = rng.randint(256, 12 * 1024)
        if n % 3 == 2:
            data = rng.randbytes(size)
        else:
            data = b"".join(rng.choices(pool, k=size // 100 + 1))[:size]
        mk(f"{root}/small/d{n % 300:03d}/f{n:05d}.{'bin' if n % 3 == 2 else 'txt'}", data)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--count"]:
        count(sys.argv[2])
    else:
        fill(sys.argv[1])
