"""Your own images: ``root/train/<class>/*`` and ``root/test/<class>/*`` (``val`` accepted for ``test``)."""
from __future__ import annotations

from pathlib import Path

from morphnas.search.data.registry import DataError, register_dataset
from morphnas.search.data.stack import stack_dataset


@register_dataset("image_folder", channels="RGB", resizes_itself=True)
def image_folder(cfg, seed: int):
    """One folder per class under ``train/`` and ``test/`` (or ``val/``), read by torchvision."""
    from torchvision import datasets, transforms  # lazy: torchvision is only needed here
    root = Path(cfg.root)
    parts = {}
    for split, names in (("train", ("train",)), ("test", ("test", "val"))):
        d = next((root / n for n in names if (root / n).is_dir()), None)
        if d is None:
            raise DataError(f"image folder {str(root)!r} needs a {names[0]!r} sub-folder with one folder per class")
        t = [transforms.ToTensor()]
        if cfg.image_size:
            t.insert(0, transforms.Resize((cfg.image_size, cfg.image_size)))
        try:
            ds = datasets.ImageFolder(str(d), transform=transforms.Compose(t))
        except (FileNotFoundError, OSError) as e:
            raise DataError(f"image folder {str(d)!r}: {e}") from None
        parts[split] = stack_dataset(ds, "image_folder")
    return (*parts["train"], *parts["test"])
