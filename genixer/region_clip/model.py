"""The region CLIP's model files: an open_clip ``CLIP`` built from a tiny custom config
(:class:`RegionClipSize`), saved and loaded in the layout of an open_clip Hugging Face hub repository
(``open_clip_config.json`` + ``open_clip_model.safetensors``, :mod:`genixer.models.open_clip_files`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import open_clip
from open_clip import CLIP, CLIPTextCfg, CLIPVisionCfg, SimpleTokenizer
from open_clip.model import set_model_preprocess_cfg
from open_clip.transform import PreprocessCfg, image_transform_v2
from safetensors.torch import save_file

from genixer.models.open_clip_files import CONFIG_NAME, WEIGHTS_NAME

_PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
VOCAB_SIZE = 49408  # SimpleTokenizer's BPE vocabulary (+ start/end of text)


class RegionClipError(ValueError):
    """A region-CLIP directory that cannot be loaded; the message names the path and the problem."""


@dataclass(frozen=True)
class RegionClipSize:
    image_size: int = 48
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 2
    context_length: int = 24  # the world's expressions are <= 6 BPE tokens; real CLIP uses 77
    embed_dim: int = 64
    # 'squash' resizes the whole crop to the square input: no object pixel is cut off, at the price of a
    # small aspect change; open_clip's default 'shortest' + centre crop can cut the edge of a clipped box.
    resize_mode: str = "squash"

    def model_cfg(self) -> dict:
        """The open_clip ``model_cfg`` (the layout of open_clip's ``model_configs/*.json``)."""
        if self.vision_width % self.vision_heads or self.text_width % self.text_heads:
            raise ValueError(f"widths must divide by heads: {self}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "width": self.vision_width,
                "layers": self.vision_layers,
                "head_width": self.vision_width // self.vision_heads,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": VOCAB_SIZE,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }

    def preprocess_cfg(self) -> dict:
        return asdict(PreprocessCfg(size=self.image_size, resize_mode=self.resize_mode))


def _preprocess_for(model):
    return image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)


def build_region_clip(size: RegionClipSize = RegionClipSize()):
    """A freshly initialised open_clip ``CLIP`` (from torch's current RNG), its preprocess and tokenizer."""
    cfg = size.model_cfg()
    model = CLIP(cfg["embed_dim"], CLIPVisionCfg(**cfg["vision_cfg"]), CLIPTextCfg(**cfg["text_cfg"]))
    set_model_preprocess_cfg(model, size.preprocess_cfg())
    tokenizer = SimpleTokenizer(context_length=size.context_length)
    return model, _preprocess_for(model), tokenizer


def save_region_clip(model, size: RegionClipSize, path: str | Path) -> Path:
    """``open_clip_config.json`` (model_cfg + preprocess_cfg) and ``open_clip_model.safetensors``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    pp = dict(getattr(model.visual, "preprocess_cfg", None) or size.preprocess_cfg())
    pp["size"] = size.image_size
    config = {"model_cfg": size.model_cfg(), "preprocess_cfg": pp}
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_NAME))
    return path


def _check_dir(path: Path) -> None:
    if not path.is_dir():
        raise RegionClipError(f"region CLIP {path}: directory does not exist")
    config = path / CONFIG_NAME
    if not config.is_file():
        raise RegionClipError(f"region CLIP {path}: missing {CONFIG_NAME}")
    try:
        cfg = json.loads(config.read_text())
    except json.JSONDecodeError as e:
        raise RegionClipError(f"region CLIP {path}: {CONFIG_NAME} is not JSON ({e})") from e
    if not isinstance(cfg, dict) or "model_cfg" not in cfg:
        raise RegionClipError(f"region CLIP {path}: {CONFIG_NAME} has no 'model_cfg'")
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLED_SUFFIXES)
    if pickled:
        # Pickled weights can execute code on load; refuse them rather than trust them.
        raise RegionClipError(
            f"region CLIP {path}: only pickled weights ({pickled[0]}); convert them to safetensors "
            f"({WEIGHTS_NAME})"
        )
    raise RegionClipError(f"region CLIP {path}: no model weights (*.safetensors) found")


def load_region_clip(path: str | Path, device: str = "cpu", weights: str | Path | None = None):
    """(model in eval mode, preprocess, tokenizer) through open_clip's own factory; nothing is downloaded.

    ``path`` is a directory: our saved models, or a real OpenCLIP directory laid out like its hub
    repository (e.g. ``laion/CLIP-ViT-L-14-laion2B-s32B-b82K`` downloaded beforehand:
    ``open_clip_config.json`` and ``open_clip_model.safetensors``). Or ``path`` is an open_clip architecture
    name (``ViT-L-14``) and ``weights`` its ``.safetensors`` file.
    """
    if weights is not None:
        return _load_named(str(path), Path(weights).resolve(), device)
    path = Path(path).resolve()
    _check_dir(path)
    name = f"local-dir:{path}"
    try:
        model, preprocess = open_clip.create_model_from_pretrained(name, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, ValueError, KeyError, TypeError, FileNotFoundError) as e:
        raise RegionClipError(f"region CLIP {path}: open_clip could not load it ({e})") from e
    model.eval()
    return model, preprocess, tokenizer


def _load_named(name: str, weights: Path, device: str):
    if name not in open_clip.list_models():
        raise RegionClipError(f"region CLIP {name!r}: not an open_clip architecture (open_clip.list_models() names them); "
                              "or give a directory with open_clip_config.json")
    if weights.suffix != ".safetensors":
        raise RegionClipError(f"region CLIP {name} weights {weights}: only .safetensors files are loaded (pickled weights "
                              "can run code); convert them")
    if not weights.is_file():
        raise RegionClipError(f"region CLIP {name} weights {weights}: file does not exist")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights), device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, ValueError, KeyError, TypeError, FileNotFoundError) as e:
        raise RegionClipError(f"region CLIP {name} with {weights}: open_clip could not load it ({e})") from e
    model.eval()
    return model, preprocess, tokenizer
