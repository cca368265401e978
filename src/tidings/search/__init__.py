"""Search and ask over the store, one module per concept, each importing only those above it:

``segment`` (words of mixed Chinese/English text) ← ``index`` (FTS5 table and change queue) ←
``query`` (parsing, concept groups, filter SQL) ← ``snippets`` (highlighted windows) ← ``rank``
(BM25, coordination, embeddings, RRF, recency; ``search`` and its hits) ← ``ask`` (answers with
verified citations) ← ``evaluate`` (recall, MRR and ask figures on labelled queries).
"""
