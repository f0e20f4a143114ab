"""Encoder and decoder families, chosen by the `model` params section.

Encoders: "mlp", "conv" (DCGAN-style). Decoders: "mlp", "conv" (factorized Bernoulli) and
"pixelcnn" (autoregressive): the two-stack gated PixelCNN with z as a global conditioning vector
(model.pixelcnn_arch "gated", the default) or the single-stack one with a spatial conditioning
map and the blind spot ("single", for ablation). model.likelihood "gaussian" (grey levels, a
mean and a std per pixel, pipeline.model.likelihood) is for the factorized decoders only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.model.base import Decoder, Encoder, apply_init
from pipeline.model.conv import ConvDecoder, ConvEncoder
from pipeline.model.likelihood import DECODER_STD_FLOOR
from pipeline.model.mlp import MLPDecoder, MLPEncoder
from pipeline.model.pixelcnn.gated import GatedPixelCNNDecoder
from pipeline.model.pixelcnn.masked import PixelCNNDecoder

if TYPE_CHECKING:  # the model code runs without pydantic (bench/bench_gpu.py on a bare machine)
    from pipeline.params.model import ModelParams

__all__ = [
    "ConvDecoder", "ConvEncoder", "Decoder", "Encoder", "GatedPixelCNNDecoder", "MLPDecoder", "MLPEncoder",
    "PixelCNNDecoder",
    "build_decoder", "build_encoder",
]


def build_encoder(params: ModelParams) -> Encoder:
    if params.encoder == "mlp":
        return MLPEncoder(params.latent_dim, list(params.hidden), params.std_floor, params.std_param,
                          params.init, params.encoder_norm)
    if params.encoder == "conv":
        return ConvEncoder(params.latent_dim, list(params.conv_channels), params.conv_fc, params.std_floor,
                           params.std_param, params.init, params.encoder_norm)
    raise ValueError(f"unknown encoder {params.encoder!r}")


def build_decoder(params: ModelParams) -> Decoder:
    decoder = _decoder(params)
    apply_init(decoder, params.init)  # masked convs mask in forward: re-initialising keeps causality
    return decoder


def _decoder(params: ModelParams) -> Decoder:
    likelihood = getattr(params, "likelihood", "bernoulli")
    floor = getattr(params, "decoder_std_floor", DECODER_STD_FLOOR)
    if params.decoder == "mlp":
        return MLPDecoder(params.latent_dim, list(params.hidden), likelihood, floor)
    if params.decoder == "conv":
        return ConvDecoder(params.latent_dim, list(params.conv_channels), params.conv_fc, likelihood, floor)
    if likelihood != "bernoulli":  # the schema refuses it first (pipeline.params.model)
        raise ValueError(f"model.likelihood {likelihood!r} needs a factorized decoder (mlp, conv), "
                         f"not {params.decoder!r}")
    if params.decoder == "pixelcnn" and params.pixelcnn_arch == "gated":
        return GatedPixelCNNDecoder(params.latent_dim, params.pixelcnn_layers, params.pixelcnn_maps)
    if params.decoder == "pixelcnn":
        return PixelCNNDecoder(params.latent_dim, params.pixelcnn_layers, params.pixelcnn_maps,
                               params.pixelcnn_cond_maps)
    raise ValueError(f"unknown decoder {params.decoder!r}")
