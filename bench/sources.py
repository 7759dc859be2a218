"""The memory of `genixer collect llava` on a file the size of llava_v1_5_mix665k.json (665K records,
~1 GB): a synthetic LLaVA JSON with a few hundred small images reused (so every image resolves) and
some text-only records, read in a subprocess whose peak RSS is printed next to the file size.

    .venv/bin/python -m bench.sources [--records N]
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

FOLDERS = ("coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K")
WORDS = ("the", "a", "of", "bus", "red", "white", "man", "on", "is", "in", "image", "what", "there", "left", "right", "table",
         "dog", "sign", "street", "car", "people", "two")


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n)).capitalize()


def write_release(root: Path, records: int, n_images: int = 300, seed: int = 0) -> tuple[Path, Path]:
    """llava.json and its image folder; turns are sized so a record averages about the real 1.5 KB."""
    rng = random.Random(seed)
    images = root / "data"
    paths = []
    for i in range(n_images):
        rel = f"{FOLDERS[i % len(FOLDERS)]}/{i:012d}.jpg"
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64 + i % 50, 48 + i % 30), (i % 256, 80, 160)).save(images / rel)
        paths.append(rel)
    path = root / "llava_v1_5_mix665k.json"
    with open(path, "w") as f:
        f.write("[")
        for i in range(records):
            text_only = rng.random() < 0.06  # ShareGPT's share of the mix
            conv = []
            for t in range(rng.choice((1, 1, 2, 3, 5, 8))):
                q = sentence(rng, rng.randint(5, 20)) + "?"
                conv += [{"from": "human", "value": ("<image>\n" if t == 0 and not text_only else "") + q},
                         {"from": "gpt", "value": sentence(rng, rng.randint(8, 120)) + "."}]
            rec = {"id": f"{i:012d}", **({} if text_only else {"image": paths[i % n_images]}), "conversations": conv}
            f.write(("," if i else "") + "\n" + json.dumps(rec, indent=1))
        f.write("\n]\n")
    return path, images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=665_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="genixer_bench_sources_") as tmp:
        root = Path(tmp)
        path, images = write_release(root, args.records)
        out = root / "llava.parquet"
        genixer = Path(sys.executable).with_name("genixer")
        t = time.perf_counter()
        subprocess.run(["nice", str(genixer), "collect", "llava", str(path), "--images", str(images), "--out", str(out),
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        rows = pq.ParquetFile(out).metadata.num_rows
        size = path.stat().st_size / 1e6
    print("| records | file | wall | rows | rows/s | peak RSS of collect |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.records:,} | {size:,.0f} MB | {wall:.0f} s | {rows:,} | {rows / wall:,.0f} | {rss:,.0f} MiB |")


if __name__ == "__main__":
    main()
