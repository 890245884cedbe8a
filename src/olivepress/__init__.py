"""olivepress: make models small, fast and task-tuned for ONNX Runtime and ONNX Runtime GenAI."""

__version__ = "0.1.0"
