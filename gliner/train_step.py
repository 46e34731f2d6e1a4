"""One training step's loss: forward a training batch through a span model and score it against the targets."""
from __future__ import annotations

import torch

from .loss import span_loss
from .model import BiEncoderSpanModel, SpanModel

MODEL_INPUTS = ("input_ids", "attention_mask", "words_mask", "text_lengths", "span_idx", "span_mask")


def batch_loss(model: SpanModel, batch: dict[str, torch.Tensor], reference: bool = False, **loss_options) -> torch.Tensor:
    """`batch` from training_data.build_training_batch (on the model's device). reference=False uses the exact
    factorised span scorer, which gives the same loss and gradients without span vectors.

    Under autocast the encoder runs in half precision; the loss (a sigmoid, a log and a sum over every span and
    label) is always computed in fp32."""
    inputs = {key: batch[key] for key in MODEL_INPUTS}
    if isinstance(model, BiEncoderSpanModel):
        labels_embeds = model.encode_labels(batch["labels_input_ids"], batch["labels_attention_mask"])
        logits, _ = model(**inputs, labels_embeds=labels_embeds, reference=reference)
    else:
        logits, _ = model(**inputs, reference=reference)
    num_labels = batch["labels"].size(-1)
    logits = logits[..., :num_labels].float()
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return span_loss(logits, batch["labels"], batch["label_mask"], batch["span_mask"], **loss_options)
