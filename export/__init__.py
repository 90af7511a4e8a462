"""Export tools of the JRC edge detector (training-side; may import torch lazily)."""
