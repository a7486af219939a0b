"""The embedded demo zoo (config/config.yaml): its PyTorch classes (`models`) and the files it starts from, made
from fixed seeds by the workflow's own demo rule (`assets`, `tf_assets`). No downloads."""

from .assets import make_asset

__all__ = ["make_asset"]
