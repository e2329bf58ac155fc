"""Open pretraining of the scene-agnostic ACE-layout encoder (``glace-pretrain-encoder``)."""
from glace_core.pretraining.config import PretrainConfig
from glace_core.pretraining.trainer import ace_encoder_state_dict, pretrain_encoder, save_ace_encoder

__all__ = ["PretrainConfig", "ace_encoder_state_dict", "pretrain_encoder", "save_ace_encoder"]
