"""Evaluation, prediction files and (later) plots and reports."""

from .evaluator import TaskPredictions, evaluate_split, predict_features
from .predictions import prediction_file_name, read_predictions, write_predictions

__all__ = ["TaskPredictions", "evaluate_split", "predict_features", "prediction_file_name", "read_predictions",
           "write_predictions"]
