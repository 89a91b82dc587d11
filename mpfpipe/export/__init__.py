"""Model export to standard formats: ONNX (`graph`), bioimage.io model packages (`bioimageio`), and the
benchmark of onnxruntime against `segment` (`bench`).

    from mpfpipe.export import export_onnx
    print(export_onnx("model.safetensors", "model.onnx").summary())
"""
from .graph import IR_VERSION, OPSET, ExportError, ExportResult, build_graph, export_onnx

__all__ = ["ExportError", "ExportResult", "IR_VERSION", "OPSET", "build_graph", "export_onnx"]
