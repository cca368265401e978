"""Search and ask over the store, one module per concept, each importing only those above it:

``segment`` (words of mixed Chinese/English text) ← ``terms`` (fields, weights, the stemmer) ←
``segments`` (the engine's postings: built, saved, scored, merged) ← ``engine`` (segments beside the
store, read as one score vector) ← ``compounds`` (synonym phrases in an item's words) ← ``query``
(parsing, concept groups, filter SQL)
← ``snippets`` (highlighted windows) ← ``storage`` (the connection on either store, the documents
indexed) ← ``hits`` (hits and their views, weights, fusion, recency, embeddings) ← ``pg``
(PostgreSQL's index and ranking) ← ``index`` (FTS5, the engine and the change queue) ← ``rewrite``
(query rewriting) ← ``rank`` (BM25 and coordination; ``search``) ← ``ask`` (answers with verified
citations) ← ``evaluate`` (recall, MRR and ask figures on labelled queries).
"""
