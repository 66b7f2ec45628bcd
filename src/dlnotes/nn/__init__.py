"""Building blocks used by several methods (conv backbones, U-Net, MLP)."""
