"""Per-photograph host work of inference, alternatives side by side in one run, as ratios.

Each comparison times two ways of doing one step on the same 12-megapixel photographs, in one thread, and prints the
median time of each and their ratio:

- resize to the HRDecoder input: ``AntialiasedResized`` against MONAI's ``Resized`` with Gaussian anti-aliasing;
- resize to the DSM input: ``SmoothInverseResized`` (area) against the same Gaussian ``Resized``;
- field of view: ``FieldOfViewCropd`` storing its pixel count against the crop followed by a second pass that
  counts the field of view (what inference did before);
- overlay: JPEG (quality 95, 4:4:4) against PNG (zlib level 1) of the painted photograph;
- PNG encoding: the package's encoder (``encode_png``) against PIL at the same zlib level 1, for the painted overlay
  and for an 8-bit probability map (sizes in bytes are printed too);
- overlay painting: ``paint_overlay`` (lesion pixels only, lookup tables) against ``monai.visualize.blend_images``
  (float blend of the whole photograph through a colour map).

Images: the IDRiD sample under ../shared/data/idrid_sample when present (``--data`` for another folder of
photographs), else synthetic 4288x2848 photographs. Example: ``python bench/host_work.py --repeat 3``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "idrid_sample" / "A. Segmentation" / "1. Original Images"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder of photographs (default: the IDRiD sample or synthetic)")
    parser.add_argument("--limit", type=int, default=4, help="photographs to use")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per photograph and method")
    return parser.parse_args(argv)


def photographs(args: argparse.Namespace, scratch: Path) -> list[str]:
    from monai_exudate.data.synthetic import write_synthetic_dataset
    from monai_exudate.inference import list_inference_inputs

    if args.data is not None:
        folder = args.data
    elif SAMPLE.is_dir():
        folder = SAMPLE
    else:
        root = write_synthetic_dataset(scratch / "synthetic", "idrid", num=args.limit, size=(4288, 2848))
        folder = root / "A. Segmentation" / "1. Original Images"
    return [item["image"] for item in list_inference_inputs(folder)][: args.limit]


def median_seconds(step: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(name: str, new: tuple[str, Callable], old: tuple[str, Callable], inputs: list, repeat: int) -> None:
    """Print the median seconds per input of both methods and new / old."""
    new_s = statistics.mean(median_seconds(lambda x=x: new[1](x), repeat) for x in inputs)
    old_s = statistics.mean(median_seconds(lambda x=x: old[1](x), repeat) for x in inputs)
    print(f"{name:14s} {new[0]:34s} {new_s:7.3f} s | {old[0]:34s} {old_s:7.3f} s | ratio {new_s / old_s:.3f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker or a writer thread
    from monai.transforms import Resized

    from monai_exudate.data.resize import AntialiasedResized, SmoothInverseResized
    from monai_exudate.data.transforms import FieldOfViewCropd, LoadFundusd
    from monai_exudate.inference.quantify import field_of_view_pixels
    from monai_exudate.inference.writers import encode_jpeg, encode_png, paint_overlay

    with tempfile.TemporaryDirectory() as scratch:
        paths = photographs(args, Path(scratch))
        loaded = [LoadFundusd(lesions=[])({"image": p}) for p in paths]
    print(f"{len(loaded)} photographs of {tuple(loaded[0]['image'].shape[1:])} (W, H), torch threads 1")

    def gaussian(size: tuple[int, int]) -> Resized:
        return Resized(keys="image", spatial_size=size, mode="bilinear", anti_aliasing=True)

    for size in ((2880, 1920), (480, 320)):
        compare(
            f"resize {size[0]}x{size[1]}",
            ("AntialiasedResized", AntialiasedResized(keys="image", spatial_size=size)),
            ("Resized bilinear + Gaussian", gaussian(size)),
            loaded,
            args.repeat,
        )
    compare(
        "resize 384x256",
        ("SmoothInverseResized (area)", SmoothInverseResized(keys="image", spatial_size=(384, 256))),
        ("Resized bilinear + Gaussian", gaussian((384, 256))),
        loaded,
        args.repeat,
    )
    crop_with_count = FieldOfViewCropd(keys="image", fov_pixels_key="fov_pixels")
    crop = FieldOfViewCropd(keys="image")
    compare(
        "field of view",
        ("crop storing its pixel count", crop_with_count),
        ("crop, then a counting pass", lambda d: (crop(d), field_of_view_pixels(d["image"]))),
        loaded,
        args.repeat,
    )
    rng = np.random.default_rng(0)
    painted = []
    for d in loaded:
        photo = d["image"].as_tensor().numpy().transpose(2, 1, 0)
        masks = rng.random((1, *photo.shape[:2])) < 0.002
        painted.append(paint_overlay(photo, masks, [(255, 230, 0)]))
    compare("overlay", ("JPEG q95 4:4:4", encode_jpeg), ("PNG zlib 1", encode_png), painted, args.repeat)
    # probability maps as a network writes them: near zero almost everywhere, smooth blobs around lesions
    blobs = [ndimage.gaussian_filter((rng.random(p.shape[:2]) < 2e-4).astype(np.float32), 4) for p in painted]
    probability_maps = [np.clip(b / max(float(b.max()), 1e-6) * 255 + 2 * rng.random(b.shape), 0, 255) for b in blobs]
    probability_maps = [m.astype(np.uint8) for m in probability_maps]
    for name, arrays in (("PNG overlay", painted), ("PNG prob map", probability_maps)):
        compare(name, ("encode_png zlib 1", encode_png), ("PIL compress_level 1", pil_png), arrays, args.repeat)
        own, pil = sum(len(encode_png(a)) for a in arrays), sum(len(pil_png(a)) for a in arrays)
        print(f"{name:14s} bytes: encode_png {own} | PIL {pil} | ratio {own / pil:.3f}")
    masks = [(rng.random((1, *p.shape[:2])) < 0.002) for p in painted]
    photos = [d["image"].as_tensor().numpy().transpose(2, 1, 0) for d in loaded]
    compare(
        "overlay paint",
        ("paint_overlay", lambda pm: paint_overlay(pm[0], pm[1], [(255, 230, 0)])),
        ("monai blend_images", lambda pm: monai_blend(pm[0], pm[1])),
        list(zip(photos, masks)),
        args.repeat,
    )


def pil_png(array: np.ndarray) -> bytes:
    """PNG bytes written by PIL at zlib level 1, as the package's encoder."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def monai_blend(photo: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The overlay through ``monai.visualize.blend_images`` (channel-first floats in, channel-last uint8 out)."""
    from monai.visualize import blend_images

    image = torch.from_numpy(photo.transpose(2, 0, 1)).float() / 255.0
    blended = blend_images(image, torch.from_numpy(masks[:1]).float(), alpha=0.5, cmap="autumn", rescale_arrays=False)
    return (blended.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)


if __name__ == "__main__":
    sys.exit(main())
