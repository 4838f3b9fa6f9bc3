"""Your own images: ``root/train/<class>/*`` and ``root/test/<class>/*`` (``val`` accepted for ``test``).

Every file is checked before it is decoded, because an image folder is input a user collected, not
a file this project wrote:

* only regular files of at most :data:`MAX_FILE_BYTES` are opened (a FIFO would block, a link to
  ``/dev/zero`` never ends);
* the header is read first and an image over :data:`MAX_PIXELS` is refused before its pixels are
  (a decompression bomb: a small PNG that inflates to gigabytes);
* a zero-byte, truncated or non-image file (text named ``.png``) is named in one line with the fix;
  ``data.bad_images: skip`` skips such files instead and says how many;
* folders are walked with links followed (datasets are often assembled from links), but a folder
  already visited is not entered again, so a link loop ends.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from morphnas.morphism.safe_io import UnsafeInput, check_regular
from morphnas.search.data.registry import DataError, register_dataset

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000           # 50 megapixels: a large photo; PIL's own bomb check starts at 89
MAX_FILE_BYTES = 256 * 2**20


@register_dataset("image_folder", channels="RGB", resizes_itself=True)
def image_folder(cfg, seed: int):
    """One folder per class under ``train/`` and ``test/`` (or ``val/``), decoded with PIL and
    converted by torchvision's ``Resize`` (when ``data.image_size``) and ``ToTensor``."""
    root = Path(cfg.root)
    skip = getattr(cfg, "bad_images", "error") == "skip"
    parts, skipped = {}, []
    classes = None
    for split, names in (("train", ("train",)), ("test", ("test", "val"))):
        d = next((root / n for n in names if (root / n).is_dir()), None)
        if d is None:
            raise DataError(f"image folder {str(root)!r} needs a {names[0]!r} sub-folder with one folder per class")
        found = sorted(p.name for p in d.iterdir() if p.is_dir())
        if not found:
            raise DataError(f"image folder {str(d)!r} has no class folders; put each class's images in a folder "
                            f"named after the class")
        if classes is None:
            classes = found
        elif found != classes:
            raise DataError(f"image folder {str(d)!r} has classes {found[:5]}, but train/ has {classes[:5]}; "
                            f"give both splits the same class folders")
        xs, ys = [], []
        for label, name in enumerate(classes):
            for path in _files(d / name):
                try:
                    xs.append(_read(path, cfg.image_size))
                except DataError as e:
                    if not skip:
                        raise DataError(f"{e}; remove it, or set data.bad_images: skip to leave such files out") \
                            from None
                    skipped.append(str(e))
                    continue
                ys.append(label)
        if not xs:
            raise DataError(f"image folder {str(d)!r} holds no readable image ({', '.join(EXTENSIONS)})")
        sizes = sorted({tuple(x.shape) for x in xs})
        if len(sizes) > 1:
            raise DataError(f"image_folder: the images differ in size ({', '.join('x'.join(map(str, s)) for s in sizes[:3])}"
                            f"{', ...' if len(sizes) > 3 else ''}); set data.image_size to resize them all (e.g. 32)")
        parts[split] = (torch.stack(xs).float(), torch.tensor(ys, dtype=torch.int64))
    if skipped:
        print(f"[data] image_folder {str(root)!r}: skipped {len(skipped)} unreadable image file(s) "
              f"(data.bad_images: skip); the first: {skipped[0]}", file=sys.stderr)
    return (*parts["train"], *parts["test"], {"class_names": classes, "skipped_images": len(skipped)})


def _files(folder: Path) -> Iterator[Path]:
    """Image files under ``folder``, sorted; links are followed, each real folder entered once."""
    seen: set[tuple[int, int]] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        try:
            st = os.stat(top)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:       # a link back to a folder already walked
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for f in sorted(files):
            if f.lower().endswith(EXTENSIONS):
                yield Path(top) / f


def _read(path: Path, size: int | None) -> torch.Tensor:
    """One image as a (3, H, W) float tensor in [0, 1], or a one-line :class:`DataError` naming it."""
    from PIL import Image  # lazy: PIL (with torchvision) is only needed for image folders
    from torchvision.transforms import functional as tvf  # lazy: as above
    try:
        check_regular(path, MAX_FILE_BYTES, "image")
    except UnsafeInput as e:
        raise DataError(str(e)) from None
    pil_bound = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None      # our own, lower bound is checked on the header below, with the size named
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:            # reads the header only
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise DataError(f"image {str(path)!r} is {w}x{h} ({w * h / 1e6:.0f} megapixels), over the "
                                    f"{MAX_PIXELS / 1e6:.0f}-megapixel bound (a decompression bomb, or a photo to "
                                    f"shrink first)")
                im.load()
                rgb = im.convert("RGB")
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        why = "it is empty" if _size(path) == 0 else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise DataError(f"image {str(path)!r} cannot be read as an image ({why})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_bound
    if size:
        rgb = tvf.resize(rgb, [size, size])
    return tvf.to_tensor(rgb)


def _size(path: Path) -> Any:
    try:
        return path.stat().st_size
    except OSError:
        return None
