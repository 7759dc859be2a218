"""The file names of an open_clip model directory, laid out like an open_clip Hugging Face hub repository:
the region CLIP's saved models (:mod:`genixer.region_clip`) and the tiny checkpoints (:mod:`genixer.models.tiny`)."""

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
