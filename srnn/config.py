"""The model's hyperparameters: one small dataclass, stored in every checkpoint."""
import dataclasses
import json

from .quantize import Q_LEVELS, check_qtype

BIG_FRAME = 8  # samples per slow-tier step; also the zero prefix of every batch
FRAME = 2  # samples per mid-tier step; also the sample tier's context
EMB_SIZE = 256  # sample-tier embedding width per previous sample
SAMPLE_RATE = 16000


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    slowdim: int = 1024
    dim: int = 1024
    q_levels: int = Q_LEVELS
    qtype: str = "linear"
    sample_rate: int = SAMPLE_RATE
    emb_size: int = EMB_SIZE
    big_frame: int = BIG_FRAME
    frame: int = FRAME

    def __post_init__(self):
        check_qtype(self.qtype)
        for name in ("slowdim", "dim", "q_levels", "sample_rate", "emb_size", "big_frame", "frame"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.big_frame % self.frame:
            raise ValueError("big_frame must be a multiple of frame")

    @property
    def mids_per_slow(self):
        """Mid-tier steps per slow-tier step (4 for 8/2)."""
        return self.big_frame // self.frame

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})
