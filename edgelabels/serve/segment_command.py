"""`edgelabels segment MODEL_DIR PATH... --out DIR`: lung masks and overlays with a U-Net run or export.

For each image: DIR/<name>.mask.png (255 lung, 0 background, at the image's own size) and
DIR/<name>.overlay.png (the X-ray in grey, the predicted lungs tinted orange and outlined; overlay.py).
Images found in a folder keep their sub-folder under DIR; a name already taken (two folders holding
p1.png, or p1.png beside p1.jpg) gets -2, -3, ... so no output overwrites another. As with `predict`, a
bad image is one line on stderr and the others still run; exit code 2 if any failed. An export folder
(model.onnx) needs onnxruntime only: TensorFlow and Keras are loaded for a run directory alone.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edgelabels.errors import UserError

EXAMPLES = """\
examples:
  edgelabels segment runs/unet-lungs xray.png --out masks          # a U-Net run (Keras)
  edgelabels segment runs/unet-lungs/export scans/ --out masks     # its export: no TensorFlow needed
  edgelabels segment runs/unet-lungs a.png scans/ --out masks --threshold 0.4

writes, for each PNG/JPEG image NAME.png (folders are searched recursively):
  DIR/NAME.mask.png      255 = lung, 0 = background, the image's own size (--threshold decides)
  DIR/NAME.overlay.png   the image in grey, the predicted lungs tinted orange with an orange outline
images found in a folder keep their sub-folder under DIR; a name already taken gets -2, -3, ..."""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR",
                        help="U-Net run directory (model.keras) or its export folder (model.onnx)")
    parser.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="images or folders of images")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the masks and overlays")
    parser.add_argument("--threshold", type=float, default=0.5, metavar="X",
                        help="lung where the probability is at least X, 0-1 (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per model call (default 8)")
    parser.add_argument("--threads", type=int, metavar="N", help="onnxruntime threads (default: one per core)")


def run(args) -> int:
    from edgelabels.runtime.segmenter import Segmenter

    if not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold must be between 0 and 1, not {args.threshold:g}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"{args.out}: exists and is not a folder")
    segmenter = Segmenter.load(args.model_dir, threads=args.threads)
    return segment_files(segmenter, args)


def named_images(paths: list[Path], skip: Path | None = None) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, output name without suffix) pairs, unique; and the lister's problems (runtime/answers.py: a
    missing path, a broken link, an unreadable file).

    Folders are searched recursively, skipping hidden files and anything under `skip` (the output
    folder: a second run must not segment the first run's masks).
    """
    from edgelabels.runtime.answers import find_images

    skip = skip.resolve() if skip is not None else None
    listed, problems = find_images(paths)
    found = [(image.path, image.relative) for image in listed
             if skip is None or skip not in image.path.resolve().parents]
    taken, named = set(), []
    for path, relative in found:
        stem = relative.with_suffix("")
        name, number = stem, 1
        while name.as_posix().lower() in taken:  # lower(): p1.png and P1.png would collide on macOS/Windows
            number += 1
            name = stem.with_name(f"{stem.name}-{number}")
        taken.add(name.as_posix().lower())
        named.append((path, name))
    return named, problems


def segment_files(segmenter, args) -> int:
    from tqdm import tqdm

    from edgelabels import atomic
    from edgelabels.data.images import read_image
    from edgelabels.errors import ImageProblem
    from edgelabels.runtime.overlay import mask_png, overlay
    from edgelabels.runtime.segmenter import at_image_size

    files, problems = named_images(args.paths, skip=args.out)
    for problem in problems:
        print(f"edgelabels: {problem}", file=sys.stderr)
    for path, name in files:
        if name.name != path.stem:
            print(f"edgelabels: note: {path} is written as {name}.mask.png (name taken)", file=sys.stderr)
    if not files:
        print("edgelabels: no PNG or JPEG images found", file=sys.stderr)
        return 2
    failed, written, empty, seconds = len(problems), 0, 0, 0.0
    with tqdm(total=len(files), unit="img", desc="segment", file=sys.stderr, disable=len(files) < 2 or None) as bar:
        for start in range(0, len(files), args.batch_size):
            chunk, images = [], []
            for path, name in files[start:start + args.batch_size]:
                try:
                    images.append(read_image(path)[0])
                    chunk.append(name)
                except ImageProblem as exc:
                    failed += 1
                    tqdm.write(f"edgelabels: {exc}", file=sys.stderr)
            if chunk:
                began = time.perf_counter()
                maps = segmenter.probabilities(images, args.batch_size)
                seconds += time.perf_counter() - began
                for name, image, probability in zip(chunk, images, maps):
                    probability = at_image_size(probability, image.size)
                    mask = mask_png(probability, args.threshold)
                    empty += mask.getbbox() is None
                    for suffix, picture in ((".mask.png", mask),
                                            (".overlay.png", overlay(image, probability, threshold=args.threshold))):
                        with atomic.temp_path(args.out / name.with_name(name.name + suffix)) as tmp:
                            picture.save(tmp, format="PNG")
                    written += 1
            bar.update(len(files[start:start + args.batch_size]))
    rate = f", {written / seconds:.1f} images/s" if seconds else ""
    no_lung = f"; {empty} with no lung found" if empty else ""
    images = f"{written} image{'' if written == 1 else 's'}"
    print(f"segmented {images} into {args.out}/ (.mask.png + .overlay.png each{rate}){no_lung}")
    if failed:
        print(f"edgelabels: {failed} of {len(files) + len(problems)} images failed", file=sys.stderr)
        return 2
    return 0
