"""A version's review queue to the label loop: the entries of the refs an evaluation page sends, as Label Studio
tasks, in the shape `edgelabels label export` gives them (labeling/export.py), so that `edgelabels label import`
brings the answers back.

One export is ctx.directory/console/label-loop/PROJECT/VERSION-UTCSTAMP/:
    images/BUCKET/KEY     each image copied out of S3 (Label Studio shows local files only, never s3:// ones)
    review.manifest       the entries' Ground Truth lines, each source-ref images/BUCKET/KEY (s3://BUCKET/KEY in
                          the dataset); labeling/export.py read_source reads it as `label export` and `import` do
    tasks.json            one task per image: our answer (the label as given) as its pre-annotation, why it was
                          picked, the label as given, the S3 source-ref
    label-config.xml      the labelling interface: every label the project's data holds
    next-steps.txt        the message below
    imported.json         what the console's label-loop page (console/loop_pages.py) brought back into the
                          project's datasets from Label Studio's export of these tasks
Label Studio's document root (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) is the label-loop folder itself: one Label
Studio serves every export, and a task's image URL is the image's path below it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from pathlib import Path

from edgelabels import atomic
from edgelabels.console.kit import project_url
from edgelabels.data.images import sniff_format
from edgelabels.data.paths import S3_BUCKET, Outside, inside, s3_object, split_s3_uri
from edgelabels.errors import UserError
from edgelabels.labeling.export import MODEL_VERSION, read_source
from edgelabels.labeling.studio import label_config, line_boxes, line_label, local_files_url, task_of
from edgelabels.service.s3 import S3Error
from edgelabels.service.versions import SIDES, manifest_path

LABEL_LOOP = Path("console") / "label-loop"  # under the service's directory
MAX_REFS = 10_000
IMAGE_MAX_BYTES = 15 * 1024 * 1024  # Rekognition's largest image (service/trainer.py)
MANIFEST, TASKS, CONFIG, STEPS = "review.manifest", "tasks.json", "label-config.xml", "next-steps.txt"
IMAGES = "images"
# new_folder's names: VERSION-UTCSTAMP, then -2, -3, ... for more exports in the same second
FOLDER_NAME = re.compile(r"^(?P<version>[A-Za-z0-9_.-]+)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?$")


def export_review(console, project_name: str, version_name: str, refs: list[str]) -> dict:
    """Write one export (see the module's docstring) -> {"message", "folder", "tasks", "page"} (page: its console
    page, console/loop_pages.py). Refused: no such project or version; UserError: nothing to export, with why."""
    if len(refs) > MAX_REFS:
        raise UserError(f"{len(refs)} images: send at most {MAX_REFS} at once")
    project, found = console.version(project_name, version_name)
    ctx = console.ctx
    lines = known_lines(ctx, project, found["ProjectVersionArn"])
    wanted = list(dict.fromkeys(refs))
    missing = [ref for ref in wanted if ref not in lines]
    if missing:
        raise UserError(f"{len(missing)} of the images are in neither the project's datasets nor the version's data, "
                        f"e.g. {missing[0]}: nothing exported")
    root = ctx.directory / LABEL_LOOP
    folder = new_folder(root, project_name, version_name)
    written, skipped = [], []  # written: (the S3 source-ref, the line naming the copy)
    for ref in wanted:
        line = lines[ref]
        local, problem = (None, "no label and no boxes to review") if shown(line) == (None, None) \
            else copy_image(ctx, ref, folder)
        if problem:
            skipped.append(f"{ref} ({problem})")
        else:
            written.append((ref, {**line, "source-ref": local}))
    if not written:
        raise UserError(f"no image could be exported: {skipped[0]}")
    atomic.write_text(folder / MANIFEST, "".join(json.dumps(line) + "\n" for _, line in written))
    source = read_source(folder / MANIFEST)  # the exporter's reader: every line one a person can be shown
    tasks = [review_task(line, image, root, ref) for (ref, _), line, image in zip(written, source.lines, source.images)]
    atomic.write_json(folder / TASKS, tasks)
    every = [shown(line) for line in lines.values()]
    labels = sorted({label for label, _ in every if label})
    boxes = sorted({box.label for _, drawn in every if drawn for box in drawn[0]})
    atomic.write_text(folder / CONFIG, label_config(labels, box_labels=boxes) if labels else
                      label_config(boxes, boxes=True))
    message = next_steps(len(tasks), folder, root, f"{project_name}-{version_name}-review") + (
        f" ({len(skipped)} left out: {'; '.join(skipped[:3])}{'; ...' if len(skipped) > 3 else ''})" if skipped
        else "")
    atomic.write_text(folder / STEPS, message + "\n")
    return {"message": message, "folder": str(folder), "tasks": len(tasks), "page": page_url(folder)}


def shown(line: dict) -> tuple:
    """(image label, boxes) as labeling/studio.py reads them; (None, None) for a line it cannot read (an entry
    with errors may have any shape)."""
    try:
        return line_label(line), line_boxes(line)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None, None


def known_lines(ctx, project: dict, version_arn: str) -> dict[str, dict]:
    """source-ref -> its Ground Truth line: the version's frozen data, then the project's datasets as they are now
    (what a person corrects is the current entry)."""
    lines = {}
    folder = ctx.version_dir(version_arn)
    for side in SIDES:
        path = manifest_path(folder, side)
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        for line in text.splitlines():
            if line.strip():
                document = json.loads(line)
                lines[document["source-ref"]] = document
    for dataset in project["Datasets"]:
        rows = ctx.store.all_entries(dataset["DatasetArn"])
        lines.update((row["source_ref"], json.loads(row["line"])) for row in rows)
    return lines


def new_folder(root: Path, project_name: str, version_name: str) -> Path:
    """root/PROJECT/VERSION-UTCSTAMP, made; a second export in the same second gets -2, -3, ..."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        for n in range(1, 1000):
            folder = inside(root, Path(project_name) / (f"{version_name}-{stamp}" + (f"-{n}" if n > 1 else "")))
            if not folder.exists():
                folder.mkdir(parents=True)
                return folder
    except (Outside, FileExistsError) as exc:
        raise UserError(f"cannot make the export's folder: {exc}") from None
    raise UserError(f"{root / project_name}: too many exports this second")


def copy_image(ctx, ref: str, folder: Path) -> tuple[str | None, str | None]:
    """(images/BUCKET/KEY, None) once the image is copied under folder, or (None, why not)."""
    try:
        bucket, key = split_s3_uri(ref)
        path = s3_object(folder / IMAGES, bucket, key)
        data = ctx.s3.read_bytes(ref, max_bytes=IMAGE_MAX_BYTES)
    except (ValueError, S3Error) as exc:
        return None, str(exc)
    found = sniff_format(data[:16])
    if found not in ("PNG", "JPEG"):
        return None, f"{found or 'not an image'}, not PNG or JPEG"
    atomic.write_bytes(path, data)
    return path.relative_to(folder).as_posix(), None


def s3_ref_of(local: str) -> str | None:
    """The dataset's s3://BUCKET/KEY of an export's images/BUCKET/KEY (copy_image's name), or None for any other."""
    top, _, rest = local.partition("/")
    bucket, _, key = rest.partition("/")
    valid = top == IMAGES and S3_BUCKET.match(bucket) and bucket not in (".", "..") and key.strip("/")
    return f"s3://{bucket}/{key}" if valid else None


def page_url(folder: Path) -> str:
    """The console's page of an export (console/loop_pages.py): where Label Studio's export is brought back."""
    return f"{project_url(folder.parent.name)}/label-loop/{urllib.parse.quote(folder.name, safe='')}"


def review_task(line: dict, image: Path, root: Path, s3_ref: str) -> dict:
    """A Label Studio task as `label export` makes one: the image by its path below the document root, our answer
    (the label as given) as the pre-annotation, and what a person reads beside it."""
    task = task_of(line, local_files_url(Path(image).resolve().relative_to(root.resolve()).as_posix()),
                   reason="review: below the evaluation's confidence threshold", model_version=MODEL_VERSION)
    drawn = line_boxes(line)
    boxes = f"boxes: {', '.join(box.label for box in drawn[0])}" if drawn else ""
    task["data"]["given"] = "; ".join(filter(None, (line_label(line), boxes)))
    task["data"]["s3_ref"] = s3_ref
    return task


def next_steps(count: int, folder: Path, root: Path, title: str) -> str:
    """What to do with the export: the exact commands (title: the Label Studio project `label export` fills)."""
    manifest = folder / MANIFEST
    return (f"{count} images exported for labelling to {folder}: import {folder / TASKS} into Label Studio (a "
            f"project whose labelling interface is {folder / CONFIG}, a local-files storage over "
            f"{folder / 'images'}; Label Studio started with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}), or let `edgelabels label export {manifest} "
            f"--label-studio URL --document-root {root} --project {title}` create it; once labelled, export the "
            f"project as JSON and run `edgelabels label import {manifest} --from-json EXPORT.json --out "
            f"{folder / 'next.manifest'}` (its images/BUCKET/KEY are the dataset's s3://BUCKET/KEY); or upload that "
            f"export on the console's page {page_url(folder)}, which writes the corrections into the project's "
            "datasets")
