"""clarity-fast: neuron detection in cleared whole-brain microscopy volumes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clarity-fast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
