"""ONNX export and the onnxruntime scoring runtime."""
