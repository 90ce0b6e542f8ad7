"""l2c: take an XGBoost model from a laptop to a SageMaker prediction API, and prove it offline."""

__version__ = "0.1.0"
