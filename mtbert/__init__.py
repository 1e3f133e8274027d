"""mtbert: multitask fine-tuning of BERT encoders (minBERT), with the methods of the literature."""

from .bert import BertConfig, BertModel, BertTokenizer, CheckpointError
from .optim import AdamW

__version__ = "0.1.0"
__all__ = ["AdamW", "BertConfig", "BertModel", "BertTokenizer", "CheckpointError", "Predictor", "__version__"]


def __getattr__(name: str):
    """``mtbert.Predictor`` on first use: the encoder alone should not load the multitask stack."""
    if name == "Predictor":
        from .inference import Predictor
        return Predictor
    raise AttributeError(f"module 'mtbert' has no attribute {name!r}")
