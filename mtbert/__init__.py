"""mtbert: multitask fine-tuning of BERT encoders (minBERT), with the methods of the literature."""

from .bert import BertConfig, BertModel, BertTokenizer, CheckpointError
from .optim import AdamW

__version__ = "0.1.0"
__all__ = ["AdamW", "BertConfig", "BertModel", "BertTokenizer", "CheckpointError", "__version__"]
