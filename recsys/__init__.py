"""xsell model library: data reading, models, evaluation and model artifacts.

Nothing here prints, parses command lines or imports Flask.
"""

__version__ = "0.1.0"
