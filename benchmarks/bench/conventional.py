"""The conventional data path the project's is compared with: a PIL ``Dataset`` through a ``DataLoader``.

What "conventional" means here: what a typical homework solution writes. Each item is opened with PIL and
transformed per item by torchvision (the project's augmentations, per item instead of per batch), and a
``DataLoader`` with :data:`CONVENTIONAL_WORKERS` workers batches them. Its training loop calls the engine's
own :func:`hw1lib.engine.train_step`, so that a comparison times the same step on both sides.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from hw1lib.config import TrainConfig
from hw1lib.data.classification import list_pngs, parse_label
from hw1lib.data.palette import decode_mask
from hw1lib.data.segmentation import scan_pairs
from hw1lib.engine import Training, train_step
from hw1lib.metrics import ConfusionMatrix
from hw1lib.precision import memory_format

#: the conventional pipeline's DataLoader workers (what a typical homework solution uses)
CONVENTIONAL_WORKERS = 2


class ConventionalClassificationSet(Dataset):
    """A torchvision-style P1 training set: opens each PNG with PIL and transforms it per item.

    Transforms: random crop with zero padding and horizontal flip (the project's augmentation), then
    ``ToTensor`` (float in [0, 1], what the models take).
    """

    def __init__(self, folder: Path, augment: dict) -> None:
        from torchvision import transforms as T

        self.files = list_pngs(folder)
        self.labels = [parse_label(p.name) for p in self.files]
        steps = [T.RandomCrop(32, padding=augment["padding"])] if augment.get("padding") else []
        steps += [T.RandomHorizontalFlip()] if augment.get("flip") else []
        self.transform = T.Compose([*steps, T.ToTensor()])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


class ConventionalSegmentationSet(Dataset):
    """A torchvision-style P2 training set: decodes each JPEG/mask pair with PIL and transforms it per item.

    Transforms, applied jointly to image and mask (``torchvision.transforms.v2`` with a ``Mask``): a random
    square crop of ``scale`` of the side resized to ``out_size``, then (``dihedral``) a horizontal flip and a
    random 90-degree rotation: the project's dihedral crop/scale augmentation, per item.
    """

    def __init__(self, folder: Path, out_size: int, scale: tuple[float, float], dihedral: bool = True) -> None:
        from torchvision.transforms import v2

        _, self.images, self.masks = scan_pairs(folder)
        if self.masks is None:
            raise ValueError(f"{folder} has no masks: the data-path comparison needs a labelled P2 folder")
        area = (scale[0] ** 2, scale[1] ** 2)
        flip = [v2.RandomHorizontalFlip()] if dihedral else []
        self.transform = v2.Compose([v2.RandomResizedCrop(out_size, scale=area, ratio=(1.0, 1.0)), *flip])
        self.dihedral = dihedral

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors

        with Image.open(self.images[index]) as image:
            pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
        with Image.open(self.masks[index]) as mask:
            classes = torch.from_numpy(decode_mask(np.asarray(mask.convert("RGB"))))
        pixels, classes = self.transform(tv_tensors.Image(pixels), tv_tensors.Mask(classes))
        k = int(torch.randint(0, 4, ())) if self.dihedral else 0
        pixels, classes = torch.rot90(pixels, k, (-2, -1)), torch.rot90(classes, k, (-2, -1))
        return pixels.float().div(255), classes.as_subclass(torch.Tensor)


def train_side(config: TrainConfig, folder: Path) -> int:
    """The side of the images a model trains on: 32 for P1; for P2 the augmentation's ``out_size`` or the files'."""
    if config.task == "classification":
        return 32
    if config.augment.get("out_size"):
        return int(config.augment["out_size"])
    with Image.open(scan_pairs(folder)[1][0]) as image:
        return image.size[0]


def conventional_loader(config: TrainConfig, folder: Path, device: torch.device) -> DataLoader:
    """The conventional pipeline for ``config``'s task over a training folder."""
    augment = config.augment
    if config.task == "classification":
        dataset: Dataset = ConventionalClassificationSet(folder, augment)
    else:
        # the defaults of hw1lib.data.augment.random_dihedral_crop_scale; no augmentation when the recipe has none
        scale = tuple(augment.get("scale", (0.5, 1.0))) if augment else (1.0, 1.0)
        dataset = ConventionalSegmentationSet(
            folder, train_side(config, folder), scale, bool(augment) and augment.get("dihedral", True)
        )
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=CONVENTIONAL_WORKERS,
        pin_memory=device.type == "cuda",
    )


def conventional_pass(
    training: Training, loader: DataLoader, config: TrainConfig, max_batches: int | None = None
) -> int:
    """One (possibly bounded) training epoch of ``training``'s model over a DataLoader: the engine's step with
    another data source.

    Returns:
        the number of images trained on.
    """
    model, task, device = training.model, training.task, training.device
    model.train()
    matrix = ConfusionMatrix(config.num_classes, device)
    seen = 0
    for step, (x, y) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format(config.channels_last))  # as to_input
        y = y.to(device, non_blocking=True)
        outputs, loss = train_step(model, training, x, y)
        matrix.update(task.predict(outputs).detach(), y)
        value = loss.item()  # a typical loop reads the loss every step (running_loss += loss.item())
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss ({value}) at step {step + 1} of the conventional pipeline")
        seen += len(x)
    task.summarize(matrix)
    return seen


def data_only_conventional(loader: DataLoader, device: torch.device, max_batches: int | None) -> int:
    """The conventional data work for one (possibly bounded) epoch, without the model: load, batch, move."""
    seen = 0
    for step, (x, y) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        seen += len(x)
    return seen
