"""An OpenAI-compatible HTTP server for an ORT GenAI model and its LoRA adapters.

The request's ``model`` picks the adapter: the base model's id, or an adapter's name. Greedy
requests are decoded together, whatever adapter each asks for, by the continuous batcher
in runtime/batching.py (on ONNX Runtime, over the same model files): on a CPU that
serves several times the tokens/s of one generation at a time. Sampled requests (and all
requests with ``batching=False``) each get their own ``og.Generator`` with its adapter
switched on, on a worker thread: generators share the model's weights but nothing else.
Either way no request reads another's adapter, cache or tokens.

In parts: ``wire`` (OpenAI's request and response bodies), ``dispatch`` (a request to its
adapter, tokens and worker: ``Server``), ``routes`` (the FastAPI app), ``startup`` (uvicorn).
"""

from olivepress.runtime.serve.dispatch import Server
from olivepress.runtime.serve.routes import create_app
from olivepress.runtime.serve.startup import bound_port, check_port, http_server, is_loopback, serve
from olivepress.runtime.serve.wire import ApiError, Finished

__all__ = [
    "ApiError",
    "Finished",
    "Server",
    "bound_port",
    "check_port",
    "create_app",
    "http_server",
    "is_loopback",
    "serve",
]
