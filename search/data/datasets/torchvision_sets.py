"""The torchvision datasets (CIFAR-10/100, MNIST, Fashion-MNIST, SVHN), downloaded into ``data.root``.

A failed download is a :class:`DataError` that says what to do (check the connection, or put the
files there by hand and set ``data.download: false``).
"""
from __future__ import annotations

from morphnas.search.data.registry import DataError, register_dataset
from morphnas.search.data.stack import stack_dataset

_DIGITS = [str(i) for i in range(10)]
_FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Which torchvision class and how its train/test splits are asked for.
_TV = {"cifar10": ("CIFAR10", "train"), "cifar100": ("CIFAR100", "train"), "mnist": ("MNIST", "train"),
       "fashion_mnist": ("FashionMNIST", "train"), "svhn": ("SVHN", "split")}


@register_dataset("cifar10", channels="RGB", class_names=_CIFAR10, augment="crop_flip")
@register_dataset("cifar100", channels="RGB", augment="crop_flip")
@register_dataset("svhn", channels="RGB", class_names=_DIGITS, augment="crop")
@register_dataset("mnist", channels="grey", class_names=_DIGITS)
@register_dataset("fashion_mnist", channels="grey", class_names=_FASHION)
def torchvision_set(cfg, seed: int):
    """A torchvision dataset's train and test splits as tensors."""
    import torchvision  # lazy: torchvision is only needed by these datasets
    from torchvision import transforms  # lazy: see above
    cls_name, how = _TV[cfg.dataset]
    cls = getattr(torchvision.datasets, cls_name)
    out = []
    for train in (True, False):
        kw = {"train": train} if how == "train" else {"split": "train" if train else "test"}
        try:
            ds = cls(root=str(cfg.root), download=cfg.download, transform=transforms.ToTensor(), **kw)
        except Exception as e:  # torchvision raises RuntimeError, URLError, OSError... for a failed download
            hint = ("check the network connection or download the files into it by hand"
                    if cfg.download else "set data.download: true or put the files there")
            raise DataError(f"cannot load dataset {cfg.dataset!r} from {cfg.root!r} "
                            f"({type(e).__name__}: {e}); {hint}") from None
        out.extend(stack_dataset(ds, cfg.dataset))
    return out
