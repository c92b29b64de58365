"""Numeric precision: of training (Keras dtype policies) and of the sampler's weights.

Training: `float32` (the original's), or a Keras mixed policy: the layers compute in bfloat16 or
float16 while the weights, the optimizer state, the sample tier's output layer (the logits), the
softmax and the loss stay float32, so a loss in bits means the same thing in every precision.
float16 needs loss scaling (its gradients underflow); bfloat16 has float32's range and does not.

Generation is memory-bound for big models (every generated sample reads all the per-sample
weights), so the sampler may keep its fused step weights in fewer bytes: bfloat16, or int8 with
one scale per output column, multiplied by float32 activations with float32 accumulation. Only the
weights are rounded; `auto` picks the format by size and by a measurement of what this machine
runs fastest (srnn.packed, which holds the packed weights).

This module needs no TensorFlow: the CLI checks the flags with it before TensorFlow loads.
"""
from .errors import SrnnError

TRAIN = ("float32", "mixed_bfloat16", "mixed_float16")
SAMPLE = ("auto", "float32", "bfloat16", "int8")


def check_distribute(precision, distribute):
    """float16's loss scale skips a step on one device's overflow, which replicas would have to agree on."""
    if precision == "mixed_float16" and distribute not in (None, "none"):
        raise SrnnError("--precision mixed_float16 does not work with --distribute: use mixed_bfloat16 "
                        "(it needs no loss scaling) or one device")


def check_engine(precision, backend):
    """float16 needs a dynamic loss scale, which only some engines have (srnn.engine.contract); the
    others train in bfloat16, which needs none."""
    from .engine.contract import FEATURES

    if precision == "mixed_float16" and not FEATURES[backend].float16_loss_scale:
        raise SrnnError(f"--precision mixed_float16 needs the TensorFlow backend (its dynamic loss scale): "
                        f"on {backend} use mixed_bfloat16, or set KERAS_BACKEND=tensorflow")


def cpu_flags():
    """This machine's CPU feature flags (Linux), or an empty set where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16():
    """BF16 dot-product instructions (AVX-512 BF16 or AMX): what makes bfloat16 faster than float32
    on a CPU rather than emulated."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def training_note(precision, gpus):
    """A note when the chosen precision will not be faster here, or None (bench/train_speed.py
    measures it: on an AVX2 CPU, mixed_float16 ran at 0.9-1.0x float32's rate, mixed_bfloat16 at
    0.2-0.5x)."""
    if precision == "float32" or gpus:
        return None
    if precision == "mixed_float16":
        return ("note: --precision mixed_float16 gains nothing on a CPU (TensorFlow has no fast float16 kernels "
                "there): it is for GPUs; on a CPU with BF16 instructions use mixed_bfloat16")
    if not cpu_has_bf16():
        return ("note: --precision mixed_bfloat16: this CPU has no BF16 instructions (avx512_bf16 / amx_bf16), "
                "so bfloat16 is emulated and training is several times slower than float32")
    return None
