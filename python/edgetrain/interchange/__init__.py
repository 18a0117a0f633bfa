"""Weights and models in other frameworks' formats: safetensors, ONNX import and export."""
