"""The paper's networks (Zakharov et al. 2019): embedder E, AdaIN generator G, projection discriminator D.

The networks, checkpoints and export need torch (the `[train]` extra). The app runs exported models with
onnxruntime and imports only `model/format.py` (the model folder's format and the identity it stores), which needs
no torch.
"""
