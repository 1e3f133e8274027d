"""Serving a trained model over HTTP, on top of ``mtbert.inference`` (needs the ``serve`` extra)."""
