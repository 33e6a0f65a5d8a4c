#!/usr/bin/env python3
"""The seed's approach to a media cache, as a benchmark peer (bench/download.js).

What the seed's Python module does per URL, reduced to the download path:
`requests.get(url, stream=True, timeout=30)` (a fresh connection per URL, as
its module-level functions do), the body read in 8 KB chunks into MD5 and a
temporary file in the cache folder, Pillow opening images for their
dimensions, then a rename to `<type>/<md5><ext>`; a ThreadPoolExecutor runs
`--workers` downloads at a time. No fsync (the seed never syncs).

Usage: seed_approach.py URLS_FILE OUT_DIR WORKERS
Prints one JSON line: {"ms", "files", "bytes"} (wall time from the first
request to the last rename; the interpreter's start-up is not counted).
Exit 3 when `requests` or Pillow is missing (the bench then skips this peer).
"""
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

try:
    import requests
    from PIL import Image
except ImportError as e:  # the bench prints the reason and skips this peer
    sys.stderr.write(f"seed_approach.py: {e}\n")
    sys.exit(3)

CHUNK = 8192
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
VIDEO_EXT = {".mp4", ".webm", ".mov"}


def folder_for(ext):
    if ext in IMAGE_EXT:
        return "images"
    if ext in VIDEO_EXT:
        return "videos"
    return "documents"


def download_one(url, out_dir):
    ext = os.path.splitext(url.rsplit("/", 1)[-1])[1].lower() or ".bin"
    folder = os.path.join(out_dir, folder_for(ext))
    md5 = hashlib.md5()
    size = 0
    with requests.get(url, stream=True, timeout=30) as r:
        r.raise_for_status()
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            for chunk in r.iter_content(chunk_size=CHUNK):
                md5.update(chunk)
                f.write(chunk)
                size += len(chunk)
    width = height = None
    if ext in IMAGE_EXT:
        try:
            with Image.open(tmp) as im:
                width, height = im.size
        except Exception:
            pass
    final = os.path.join(folder, md5.hexdigest() + ext)
    os.replace(tmp, final)
    return {"md5": md5.hexdigest(), "size": size, "width": width, "height": height, "path": final}


def main():
    urls_file, out_dir, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(urls_file) as f:
        urls = [line.strip() for line in f if line.strip()]
    for name in ("images", "videos", "documents"):
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda u: download_one(u, out_dir), urls))
    ms = (time.perf_counter() - t0) * 1000
    print(json.dumps({"ms": ms, "files": len(results), "bytes": sum(r["size"] for r in results)}))


if __name__ == "__main__":
    main()
