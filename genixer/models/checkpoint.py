"""Save / load any Hugging Face format image-text-to-text checkpoint directory (safetensors only)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # pipeline logs, not terminals: no per-load progress bars


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the path and the problem."""


_PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")


def resolve_device(device: str = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def save_model(model, processor, path: str | Path) -> Path:
    """Write weights (always safetensors in transformers >= 5), config, generation config and processor."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _check_files(path: Path) -> None:
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path}: directory does not exist")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"checkpoint {path}: missing config.json")
    has_safetensors = any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file()
    if has_safetensors:
        return
    pickled = [name for name in _PICKLED if (path / name).exists()] + [p.name for p in path.glob("*.bin")]
    if pickled:
        # Pickled weights can execute code on load; we refuse them instead of silently trusting them.
        raise CheckpointError(
            f"checkpoint {path}: only pickled weights ({sorted(set(pickled))[0]}); "
            "convert them to safetensors (model.save_pretrained in transformers >= 5 writes safetensors)"
        )
    raise CheckpointError(f"checkpoint {path}: no model weights (*.safetensors) found")


def _check_architecture(path: Path, trust_remote_code: bool) -> None:
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, OSError) as err:
        raise CheckpointError(f"checkpoint {path}: unreadable or unknown config ({err})") from err
    remote = trust_remote_code and "AutoModelForImageTextToText" in (getattr(config, "auto_map", None) or {})
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and not remote:
        raise CheckpointError(
            f"checkpoint {path}: unsupported architecture model_type={config.model_type!r} "
            "(not an image-text-to-text model in transformers)"
        )


def load_model(
    path: str | Path, device: str = "auto", dtype: str = "float32", trust_remote_code: bool = False
):
    """Load (model, processor) from a checkpoint directory; the model is in eval mode on ``device``.

    Both LLaVA-style models and Fuyu load through ``AutoModelForImageTextToText`` (transformers 5 maps
    ``fuyu`` to ``FuyuForCausalLM`` there), so no per-architecture branches are needed.
    """
    path = Path(path)
    _check_files(path)
    _check_architecture(path, trust_remote_code)
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, OSError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: cannot load processor ({err})") from err
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=getattr(torch, dtype), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    return model.to(resolve_device(device)).eval(), processor
