"""srnn: a three-tier SampleRNN (Mehri et al., ICLR 2017) on Keras 3 / TensorFlow 2.

The package is laid out as the pipeline runs: audio in (`audio`), parts (`parts`),
quantisation (`quantize`), batches for truncated BPTT (`batches`), the model (`model`),
training (`train`), sampling (`sample`) and the checkpoint file (`checkpoint`).
"""
import os

# The model is written for the TensorFlow backend (tf.function / XLA / tf.distribute); pin it
# before anything imports keras, and keep TensorFlow's C++ start-up chatter off the user's screen.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # errors still reach Python as exceptions

__version__ = "0.1.0"
