"""Evaluation, prediction files and the per-example analysis files reports read."""

from .analysis import analysis_file, read_analysis, write_analysis
from .evaluator import TaskPredictions, evaluate_split, predict_features
from .predictions import prediction_file_name, read_predictions, write_predictions

__all__ = ["TaskPredictions", "analysis_file", "evaluate_split", "predict_features", "prediction_file_name",
           "read_analysis", "read_predictions", "write_analysis", "write_predictions"]
