"""The PixelCNN family of decoders (exact autoregressive log p(x|z)):

- masked.py: the single-stack masked-convolution PixelCNN (`model.pixelcnn_arch: single`), with
  the pieces the family shares (masked convolutions, the gated unit, the crop sampler, the head);
- gated.py: the two-stack gated PixelCNN with z as a global conditioning vector (`gated`, the
  study's flexible decoder);
- cache.py: fast ancestral sampling of the two-stack model (the same draws as the crop sampler).
"""
