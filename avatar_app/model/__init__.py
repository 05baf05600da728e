"""The paper's networks (Zakharov et al. 2019): embedder E, AdaIN generator G, projection discriminator D.

Everything here needs torch (the `[train]` extra). The app itself runs exported models with onnxruntime and
never imports this package; only training, export and `avatar create --model` (through the exported embedder)
touch model weights.
"""
