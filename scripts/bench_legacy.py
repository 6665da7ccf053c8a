"""Legacy enrolment (dlib `face_recognition`) against ours on the same LFW photos, in one run.

Run by scripts/bench-legacy, which makes the legacy virtualenv and compiles our side first. Both
sides time one enrolment photo from file to embedding:

- legacy: `load_image_file`, `face_locations(img, number_of_times_to_upsample=1, model="hog")`,
  `face_encodings(img, locations)`, as the old backend enrolled a photo;
- ours: decode, detect, choose the central face, embed (`cargo bench -p edge-agent --bench vision
  -- --enrol-list FILE`), at 1 and at 2 threads.

The photos are the first N distinct images of lfw-dev/pairs.tsv, in its order (a fixed choice,
written to .cache/bench-legacy/photos.txt and given to both sides). Each side runs every photo
`--runs` times (the per-photo median is kept); the sides take turns for `--rounds` rounds, so a
spell of a busy host falls on both. The table shows the median (and p90) over the photos of those
per-photo medians, and legacy / ours.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The target: ours at least 10x faster per enrolment photo.
TARGET_RATIO = 10.0


def faces_dir() -> Path:
    return Path(os.environ.get("ROLLCALL_FACES", ROOT.parent / "shared" / "faces"))


def pick_photos(n: int) -> list[Path]:
    """The first `n` distinct images of pairs.tsv (image_a, then image_b, row by row)."""
    lfw = faces_dir() / "lfw-dev"
    seen: list[str] = []
    with open(lfw / "pairs.tsv", encoding="utf-8") as pairs:
        next(pairs)  # header: fold, same, image_a, image_b
        for line in pairs:
            for image in line.rstrip("\n").split("\t")[2:4]:
                if image not in seen:
                    seen.append(image)
            if len(seen) >= n:
                break
    return [lfw / "images" / image for image in seen[:n]]


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) * 9 // 10, len(ordered) - 1)]


def time_legacy(photos: list[Path], runs: int) -> tuple[dict[Path, float], dict[Path, int], float]:
    """Per-photo median ms, faces found, and CPU time / wall time over the whole pass."""
    import face_recognition

    medians: dict[Path, float] = {}
    found: dict[Path, int] = {}
    # The models load at import and on first use; keep that out of the first photo's time.
    warm = face_recognition.load_image_file(str(photos[0]))
    face_recognition.face_encodings(warm, face_recognition.face_locations(warm, 1, "hog"))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for photo in photos:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            image = face_recognition.load_image_file(str(photo))
            locations = face_recognition.face_locations(
                image, number_of_times_to_upsample=1, model="hog"
            )
            encodings = face_recognition.face_encodings(image, locations)
            samples.append((time.perf_counter() - start) * 1000)
        medians[photo] = statistics.median(samples)
        found[photo] = len(encodings)
    cpu_per_wall = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return medians, found, cpu_per_wall


def time_ours(list_file: Path, runs: int):
    """The banner lines, and per thread count the per-photo median ms and embeddings made."""
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "-p", "edge-agent", "--bench", "vision", "--",
         "--enrol-list", str(list_file), "--runs", str(runs)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    banner = [line for line in out.splitlines() if line.startswith("- ")]
    medians: dict[int, dict[Path, float]] = {}
    found: dict[int, dict[Path, int]] = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if fields[0] == "enrol":
            threads, photo = int(fields[1]), Path(fields[2])
            medians.setdefault(threads, {})[photo] = float(fields[3])
            found.setdefault(threads, {})[photo] = int(fields[4])
    return banner, medians, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=60, help="how many LFW photos (default 60)")
    parser.add_argument("--runs", type=int, default=3, help="runs per photo per pass (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="passes per side, taking turns (default 2)")
    args = parser.parse_args()

    photos = pick_photos(args.photos)
    cache = ROOT / ".cache" / "bench-legacy"
    cache.mkdir(parents=True, exist_ok=True)
    list_file = cache / "photos.txt"
    list_file.write_text("".join(f"{p}\n" for p in photos), encoding="utf-8")

    legacy: dict[Path, list[float]] = {p: [] for p in photos}
    ours: dict[int, dict[Path, list[float]]] = {}
    cpu_per_wall: list[float] = []
    banner: list[str] = []
    for round_no in range(args.rounds):
        print(f"round {round_no + 1} of {args.rounds}: legacy...", file=sys.stderr)
        medians, legacy_found, ratio = time_legacy(photos, args.runs)
        cpu_per_wall.append(ratio)
        for p, ms in medians.items():
            legacy[p].append(ms)
        print(f"round {round_no + 1} of {args.rounds}: ours...", file=sys.stderr)
        banner, our_medians, our_found = time_ours(list_file, args.runs)
        for threads, per_photo in our_medians.items():
            for p, ms in per_photo.items():
                ours.setdefault(threads, {}).setdefault(p, []).append(ms)

    # Per photo, the median over rounds; then median and p90 over photos.
    legacy_ms = [statistics.median(legacy[p]) for p in photos]
    legacy_median = statistics.median(legacy_ms)
    print("\n".join(banner))
    print(
        f"- legacy: face_recognition {version('face_recognition')} on dlib-bin {version('dlib-bin')}, "
        f"HOG detector upsampled once, 5-point landmarks, ResNet encoder, 1 jitter; CPU time / wall "
        f"time of its passes {statistics.median(cpu_per_wall):.2f} (1.0: one core busy throughout; "
        f"below: the host was busy)"
    )
    print(
        f"- photos: the first {len(photos)} distinct images of lfw-dev/pairs.tsv (250x250), "
        f"{args.runs} runs each per pass, {args.rounds} passes per side taking turns\n"
    )
    print("| enrolment photo, file to embedding | threads | median ms per photo | p90 ms | faces embedded | legacy / ours |")
    print("|---|---|---|---|---|---|")
    print(
        f"| legacy: `face_locations` (HOG, upsample 1) + `face_encodings` | as dlib runs | "
        f"{legacy_median:.1f} | {p90(legacy_ms):.1f} | {sum(legacy_found.values())} in {len(photos)} photos | 1.0x |"
    )
    verdicts = []
    for threads in sorted(ours):
        ms = [statistics.median(ours[threads][p]) for p in photos]
        ratio = legacy_median / statistics.median(ms)
        print(
            f"| ours: decode + detect + pick central + embed | {threads} | {statistics.median(ms):.1f} | "
            f"{p90(ms):.1f} | {sum(our_found[threads].values())} in {len(photos)} photos | {ratio:.1f}x |"
        )
        verdicts.append((threads, ratio))
    met = all(ratio >= TARGET_RATIO for _, ratio in verdicts)
    said = ", ".join(f"{ratio:.1f}x at {threads} thread(s)" for threads, ratio in verdicts)
    print(f"\ntarget, ours >= {TARGET_RATIO:.0f}x faster per enrolment photo: {'met' if met else 'NOT met'} ({said})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
