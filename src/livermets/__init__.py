"""livermets: liver and liver-metastasis segmentation on CT, evaluated lesion by lesion."""

__version__ = "0.1.0"
