"""srnn: SampleRNN (Mehri et al., ICLR 2017) on Keras 3 / TensorFlow 2, by default the original
three-tier model.

The package is laid out as the pipeline runs: audio in (`audio`), parts (`parts`),
quantisation (`quantize`), batches for truncated BPTT (`batches`), the architecture (`config`),
the RNN maths (`cells`), the tiers and the model (`model`), training (`train`) and watching it
(`watch`), sampling (`sample`), the checkpoint file (`checkpoint`) and the SavedModel (`export`).
"""
import os

# The Keras backend is chosen the Keras way (KERAS_BACKEND, keras.json; TensorFlow by default):
# srnn.engine reads it. Keep TensorFlow's C++ start-up chatter off the user's screen.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # errors still reach Python as exceptions

__version__ = "0.1.0"
