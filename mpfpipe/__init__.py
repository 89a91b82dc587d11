"""mpfpipe: max-pooling fragment (MPF) training and whole-volume segmentation on CPU clusters.

Masci, Giusti, Ciresan, Fricout & Schmidhuber, "A fast learning algorithm for image segmentation with max-pooling
convolutional networks" (ICIP 2013): one forward/backward pass over a whole image gives exactly the output and
gradient of the patch network at every pixel.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mpfpipe")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
