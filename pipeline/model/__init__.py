"""Encoder and decoder families, chosen by the `model` params section.

Encoders: "mlp", "conv" (DCGAN-style). Decoders: "mlp", "conv" (factorized Bernoulli) and
"pixelcnn" (gated PixelCNN conditioned on z, autoregressive).
"""

from __future__ import annotations

from pipeline.model.base import Decoder, Encoder, apply_init
from pipeline.model.conv import ConvDecoder, ConvEncoder
from pipeline.model.mlp import MLPDecoder, MLPEncoder
from pipeline.model.pixelcnn import PixelCNNDecoder
from pipeline.params.model import ModelParams

__all__ = [
    "ConvDecoder", "ConvEncoder", "Decoder", "Encoder", "MLPDecoder", "MLPEncoder", "PixelCNNDecoder",
    "build_decoder", "build_encoder",
]


def build_encoder(params: ModelParams) -> Encoder:
    if params.encoder == "mlp":
        return MLPEncoder(params.latent_dim, list(params.hidden), params.std_floor, params.std_param,
                          params.init)
    if params.encoder == "conv":
        return ConvEncoder(params.latent_dim, list(params.conv_channels), params.conv_fc, params.std_floor,
                           params.std_param, params.init)
    raise ValueError(f"unknown encoder {params.encoder!r}")


def build_decoder(params: ModelParams) -> Decoder:
    decoder = _decoder(params)
    apply_init(decoder, params.init)  # masked convs mask in forward: re-initialising keeps causality
    return decoder


def _decoder(params: ModelParams) -> Decoder:
    if params.decoder == "mlp":
        return MLPDecoder(params.latent_dim, list(params.hidden))
    if params.decoder == "conv":
        return ConvDecoder(params.latent_dim, list(params.conv_channels), params.conv_fc)
    if params.decoder == "pixelcnn":
        return PixelCNNDecoder(params.latent_dim, params.pixelcnn_layers, params.pixelcnn_maps,
                               params.pixelcnn_cond_maps)
    raise ValueError(f"unknown decoder {params.decoder!r}")
