"""NotaGen's sizes and named presets; torch-free, so a command's parser can list them without loading torch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

VOCAB_SIZE = 128


@dataclass(frozen=True)
class NotaGenConfig:
    """Sizes of a NotaGen model; heads are hidden / 64 as upstream builds them."""

    patch_size: int = 16
    patch_length: int = 1024
    patch_layers: int = 20
    char_layers: int = 6
    hidden_size: int = 1280
    num_heads: int = 0  # 0: hidden_size // 64
    dropout: float = 0.1  # GPT-2's default embedding / attention / residual dropout
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.num_heads == 0:
            object.__setattr__(self, "num_heads", max(1, self.hidden_size // 64))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden size {self.hidden_size} is not divisible by {self.num_heads} heads")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NotaGenConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


PRESETS: dict[str, NotaGenConfig] = {
    "notagen-x": NotaGenConfig(16, 1024, 20, 6, 1280),
    "notagen-large": NotaGenConfig(16, 1024, 20, 6, 1280),
    "notagen-medium": NotaGenConfig(16, 2048, 16, 3, 1024),
    "notagen-small": NotaGenConfig(16, 2048, 12, 3, 768),
    # Small enough for the embedded demo model (a few MB) and CPU training.
    "demo": NotaGenConfig(16, 1024, 6, 3, 256),
    # Test sizes: seconds on a CPU.
    "tiny": NotaGenConfig(16, 64, 2, 2, 128),
    "micro": NotaGenConfig(16, 32, 1, 1, 64),
}


def preset(name: str) -> NotaGenConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
