"""tune-schane: tune supervised contrastive fine-tuning losses (SupCon, SCHaNe, CLCE).

Importing the package is cheap: Ray, Optuna, matplotlib and timm are imported lazily by the
modules that need them.
"""

__version__ = "0.1.0"
