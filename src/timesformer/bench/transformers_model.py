"""transformers' TimeSformer with our architecture: the side-by-side reference."""

from __future__ import annotations

from ..model.timesformer import TimeSformerConfig


def transformers_model(config: TimeSformerConfig):
    """transformers' TimesformerForVideoClassification with the same architecture, eval mode."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    theirs = TimesformerConfig(
        image_size=config.img_size,
        patch_size=config.patch_size,
        num_channels=config.in_chans,
        num_frames=config.num_frames,
        hidden_size=config.embed_dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.num_heads,
        intermediate_size=config.mlp_hidden_dim,
        hidden_act="gelu",
        layer_norm_eps=config.norm_eps,
        qkv_bias=config.qkv_bias,
        attention_type=config.attention_type,
        num_labels=config.num_classes,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        drop_path_rate=0,  # inference only (its config field is typed int)
    )
    return TimesformerForVideoClassification(theirs).eval()
