"""The encoder alone: config, model, checkpoint loading, tokenizer. Imports nothing else of mtbert."""

from .checkpoint import CheckpointError, resolve_checkpoint_dir
from .config import BertConfig
from .model import BertModel, EncoderOutput
from .tokenizer import BertTokenizer

__all__ = ["BertConfig", "BertModel", "BertTokenizer", "CheckpointError", "EncoderOutput", "resolve_checkpoint_dir"]
