"""Search and ask over the store (``engine``), and their labelled evaluation (``evaluate``)."""
