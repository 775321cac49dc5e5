#!/usr/bin/env python3
"""Hostile local data against a hangar source tree: outcome, seconds and peak RSS per attack.

Each attack builds a small repository with the code of ``--tree`` (so its pack index format is
that tree's), damages it the way an attacker could (plain git, files, symlinks, FIFOs, bombs),
then reads it in a child process of that tree under ``RLIMIT_AS`` (``--limit-gib``, default 3)
and a timeout (``--timeout``, default 30 s). Run it once against an older tree and once against
this one to get before/after figures::

    git archive ca89ead | tar -x -C /tmp/hangar-before
    python3 scripts/attack_local.py --tree /tmp/hangar-before
    python3 scripts/attack_local.py --tree .
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np

V1 = np.dtype([("digest", "u1", (32,)), ("offset", "<u8"), ("length", "<u8"), ("rawlen", "<u8"), ("codec", "u1")])
V2 = np.dtype([("digest", "u1", (32,)), ("offset", "<u8"), ("length", "<u8"), ("rawlen", "<u8"), ("codec", "u1"),
               ("check", "<u8")])
MAGIC = b"HNGRPIDX"


def run_child(tree: str, code: str, limit: int, timeout: float) -> dict:
    pre = textwrap.dedent(f"""
        import resource, sys, time, json
        resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
        sys.path.insert(0, {tree!r})
        def peak_rss_mb():  # VmHWM restarts at exec (ru_maxrss keeps the forked parent's peak)
            return [int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0] // 1024
        def report(outcome):
            print(json.dumps({{"outcome": outcome[:160], "s": round(time.perf_counter() - t0, 3),
                              "rss_mb": peak_rss_mb()}}))
        t0 = time.perf_counter()
        """)
    body = textwrap.dedent(code)
    try:
        r = subprocess.run([sys.executable, "-c", pre + body], capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONPATH": tree})
    except subprocess.TimeoutExpired:
        return {"outcome": f"still running after {timeout:.0f} s (killed)", "rc": None, "rss_mb": None}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    res = json.loads(lines[-1]) if lines else {"outcome": (r.stderr.strip().splitlines() or ["?"])[-1][:160],
                                                "rss_mb": None}
    res["rc"] = r.returncode
    return res


READ = """
from hangar import Repository
co = Repository({path!r}).checkout()
try:
    arr = co.arraysets[{aset!r}][{key!r}]
    report(f"returned {{arr.nbytes}} bytes, exit 0")
except BaseException as exc:
    report(f"{{type(exc).__name__}}: {{exc}}")
"""


def make_repo(tree: str, path: str, backend: str, n: int) -> tuple[str, int, int]:
    os.makedirs(path)
    code = f"""
        import numpy as np
        from hangar import Repository
        r = Repository({path!r}, exists=False)
        r.init(user_name="a", user_email="a@example.com")
        for name in ("a", "b"):
            co = r.checkout(write=True)
            aset = co.arraysets.init_arrayset(name, shape=({n},), dtype=np.int64, backend={backend!r})
            for i in range(4):
                aset[i] = np.arange({n}, dtype=np.int64) * (i + 1) + ord(name)
            co.commit("add " + name)
            co.close()
        co = r.checkout()
        ptr = co.arraysets["b"]._pointer(2)
        loc = co._session.store.location(ptr.digest)
        print(json.dumps([loc.pack, loc.offset, loc.length]))
        """
    res = subprocess.run([sys.executable, "-c", f"import json, sys\nsys.path.insert(0, {tree!r})\n"
                          + textwrap.dedent(code)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": tree})
    pack, offset, length = json.loads(res.stdout.strip().splitlines()[-1])
    return os.path.join(path, ".hangar", "data", "packs", pack), offset, length


def rewrite_record(pack_dir: str, at: int, **fields) -> None:
    path = os.path.join(pack_dir, "index")
    raw = open(path, "rb").read()
    head, dtype = (raw[:16], V2) if raw[:8] == MAGIC else (b"", V1)
    recs = np.frombuffer(raw[len(head):], dtype=dtype).copy()
    i = int(np.flatnonzero(recs["offset"] == at)[0])
    for k, v in fields.items():
        if k in recs.dtype.names:
            recs[k][i] = v
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(head + recs.tobytes())


def zstd_rle_frame(total: int, declare: bool) -> bytes:
    head = b"\x28\xb5\x2f\xfd" + (b"\xe0" + struct.pack("<Q", total) if declare else b"\x00\x58")
    out, left = [head], total
    while left:
        n = min(128 << 10, left)
        left -= n
        out.append((n << 3 | 2 | (0 if left else 1)).to_bytes(3, "little") + b"\x00")
    return b"".join(out)


def git_edit(path: str, files: dict) -> None:
    gd = ["git", "--git-dir", os.path.join(path, ".hangar")]
    env = {**os.environ, "GIT_INDEX_FILE": os.path.join(path, "attack-index"), "GIT_AUTHOR_NAME": "m",
           "GIT_AUTHOR_EMAIL": "m@x", "GIT_COMMITTER_NAME": "m", "GIT_COMMITTER_EMAIL": "m@x"}

    def git(*args: str, data: bytes | None = None) -> str:
        r = subprocess.run([*gd, *args], input=data, capture_output=True, env=env, check=True)
        return r.stdout.decode().strip()

    git("read-tree", "master")
    for p, data in files.items():
        git("update-index", "--add", "--cacheinfo", f"100644,{git('hash-object', '-w', '--stdin', data=data)},{p}")
    commit = git("commit-tree", git("write-tree"), "-p", "master", "-m", "attack")
    git("update-ref", "refs/heads/master", commit)


def attacks(tree: str, tmp: str, limit: int, timeout: float) -> list[tuple[str, dict]]:
    out = []
    counter = iter(range(1000))

    def repo(backend: str = "raw", n: int = 8192):
        path = os.path.join(tmp, f"r{next(counter)}")
        pack_dir, offset, length = make_repo(tree, path, backend, n)
        return path, pack_dir, offset, length

    def read(path: str, aset: str = "b", key: object = 2) -> dict:
        return run_child(tree, READ.format(path=path, aset=aset, key=key), limit, timeout)

    # 1. object dtype in a schema written with git
    path, *_ = repo()
    schema = json.loads(subprocess.run(["git", "--git-dir", os.path.join(path, ".hangar"), "cat-file", "-p",
                                        "master:arraysets/b/schema"], capture_output=True, check=True).stdout)
    schema["dtype"] = "|O"
    git_edit(path, {"arraysets/b/schema": json.dumps(schema).encode()})
    out.append(("schema dtype |O, read a sample", read(path)))
    # 2. object dtype in a pointer, fsck
    path, *_ = repo()
    ls = subprocess.run(["git", "--git-dir", os.path.join(path, ".hangar"), "ls-tree", "-r", "master"],
                        capture_output=True, text=True, check=True).stdout.splitlines()
    p = [ln.split("\t")[1] for ln in ls if ln.startswith("100644") and "/b/samples/" in ln and ln.endswith("i:2")][0]
    ptr = subprocess.run(["git", "--git-dir", os.path.join(path, ".hangar"), "cat-file", "-p", f"master:{p}"],
                         capture_output=True, text=True, check=True).stdout
    git_edit(path, {p: ptr.replace(" <i8 ", " |O ").encode()})
    out.append(("pointer dtype |O, hangar fsck (verify)", run_child(tree, f"""
        from hangar import Repository
        rep = Repository({path!r}).verify()
        report(f"exit 0, fsck ok={{rep.ok}}: {{(rep.records or rep.corrupt or ['-'])[0]}}")
        """, limit, timeout)))
    # 3-4. decompression bombs in a pack
    for declare in (True, False):
        path, pack_dir, offset, length = repo("zstd")
        bomb = zstd_rle_frame(2 << 30, declare)
        chunk = os.path.join(pack_dir, "c", "0")
        os.chmod(chunk, 0o644)
        with open(chunk, "r+b") as f:
            end = f.seek(0, 2)
            f.write(bomb)
        import xxhash  # the checksum a crafted format-2 index would carry

        rewrite_record(pack_dir, offset, offset=end, length=len(bomb), check=xxhash.xxh3_64_intdigest(bomb) or 1)
        what = "declaring 2 GiB" if declare else "without declared size (2 GiB)"
        out.append((f"64 KiB zstd frame {what} in a pack, read", read(path)))
    # 5. the same bomb through put_stored (fetch_data / the server's upload)
    bomb_path = os.path.join(tmp, "bomb.zst")
    with open(bomb_path, "wb") as f:
        f.write(zstd_rle_frame(2 << 30, True))
    out.append(("64 KiB zstd frame declaring 2 GiB through put_stored", run_child(tree, f"""
        import numpy as np, struct
        from hangar.store import TensorStore, sample_digest
        from hangar.store.packs import LocalPackStorage
        from hangar.store.tensorstore import StoredSample
        s = TensorStore(LocalPackStorage({os.path.join(tmp, "ps")!r}))
        bomb = open({bomb_path!r}, "rb").read()
        try:
            s.put_stored(StoredSample(sample_digest(np.zeros(8192, np.int64)), 2, 65536, bomb), "<i8", (8192,))
            report("stored, exit 0")
        except BaseException as exc:
            report(f"{{type(exc).__name__}}: {{exc}}")
        """, limit, timeout)))
    # 6-9. links and FIFOs in place of pack files
    for what, name, make in (("index symlinked to /dev/zero", "index", lambda p: os.symlink("/dev/zero", p)),
                             ("FIFO in place of the index", "index", os.mkfifo),
                             ("FIFO in place of the data file", "c/0", os.mkfifo),
                             ("data file symlinked to /etc/passwd", "c/0", lambda p: os.symlink("/etc/passwd", p))):
        path, pack_dir, offset, length = repo("raw", 8)
        target = os.path.join(pack_dir, name)
        os.unlink(target)
        make(target)
        out.append((f"{what}, read", read(path)))
    # 10. a flipped byte
    path, pack_dir, offset, length = repo("raw", 4096)
    chunk = os.path.join(pack_dir, "c", "0")
    os.chmod(chunk, 0o644)
    with open(chunk, "r+b") as f:
        f.seek(offset + 100)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x10]))
    out.append(("one flipped byte in a pack, plain read", read(path)))
    # 11. a truncated index
    path, pack_dir, offset, length = repo("raw", 8)
    os.chmod(os.path.join(pack_dir, "index"), 0o644)
    os.truncate(os.path.join(pack_dir, "index"), os.path.getsize(os.path.join(pack_dir, "index")) - 3)
    out.append(("truncated pack index, read a sample of ANOTHER pack", read(path, "a", 1)))
    # 12. a server answering 149 bytes that claim 3 GiB
    import http.server

    class Lying(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = struct.pack("<32sBQQ", body[:32], 2, 65536, 3 << 30) + b"\0" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Lying)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    out.append(("server answers 149 bytes claiming 3 GiB, fetch", run_child(tree, f"""
        import numpy as np
        from hangar.records.pointer import SamplePointer
        from hangar.remote.client import DataClient, download_into
        from hangar.store import TensorStore, sample_digest
        from hangar.store.packs import LocalPackStorage
        s = TensorStore(LocalPackStorage({os.path.join(tmp, "cl")!r}))
        p = SamplePointer(sample_digest(np.zeros(8192, np.int64)), "<i8", (8192,))
        try:
            with DataClient("127.0.0.1:{srv.server_address[1]}") as c:
                download_into(s, c, [p])
            report("exit 0")
        except BaseException as exc:
            report(f"{{type(exc).__name__}}: {{exc}}")
        """, limit, timeout)))
    srv.shutdown()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", required=True, help="hangar source tree to attack")
    p.add_argument("--limit-gib", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    tree = os.path.abspath(args.tree)
    with tempfile.TemporaryDirectory(prefix="hangar-attack-") as tmp:
        rows = attacks(tree, tmp, int(args.limit_gib * (1 << 30)), args.timeout)
    print(f"tree {tree}: child RLIMIT_AS {args.limit_gib} GiB, timeout {args.timeout:.0f} s")
    for what, res in rows:
        rc = "-" if res["rc"] is None else res["rc"]
        print(f"- {what}: rc {rc}, {res.get('s', '-')} s, peak RSS {res.get('rss_mb')} MB, {res['outcome']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
