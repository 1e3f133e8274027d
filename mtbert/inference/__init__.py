"""Using a trained model outside training: predictions with labels (``Predictor``) and exports."""

from .predictor import Prediction, Predictor, answer

__all__ = ["Prediction", "Predictor", "answer"]
