"""The one training-memory estimate: LoRA adapter sizes against peft's, full vs LoRA vs DPO."""
import torch

from pipelines.dpo.memory import estimate_dpo_memory
from pipelines.model.config import preset
from pipelines.model.lora import LoraSpec, add_lora
from pipelines.model.network import NotaGen
from pipelines.training.config import LORA_TARGETS
from pipelines.training.memory import estimate_step_memory, lora_parameters


def test_lora_parameters_equal_what_peft_adds():
    config = preset("tiny")
    model = NotaGen(config)
    add_lora(model, LoraSpec(rank=4, alpha=8, dropout=0.0, targets=LORA_TARGETS, char_only=False))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_parameters(config, 4) == trainable > 0


def test_full_lora_and_dpo_estimates_of_notagen_x():
    x = preset("notagen-x")
    full = estimate_step_memory(x)
    lora = estimate_step_memory(x, lora_rank=16)
    dpo = estimate_dpo_memory(x)
    assert full.trained == full.parameters == 515_738_880 and full.reference_weights == 0
    assert lora.trained == lora_parameters(x, 16) < full.parameters // 50
    assert lora.total < full.total < dpo.total < 24 * 10 ** 9  # each fits the user's 24 GB card
    assert dpo.activations == 2 * full.activations and dpo.reference_weights == 2 * dpo.parameters
    assert estimate_step_memory(x, sequences=4).activations == 4 * full.activations
    assert estimate_step_memory(x, checkpointing="none").activations > full.activations
    assert estimate_step_memory(x, reference_dtype=torch.float32).reference_weights == 4 * full.parameters
    assert "reference" not in full.describe() and "M trained" in lora.describe()
