"""The stages items go through: extract, dedupe, summarize, classify, translate, and the
process pool that runs their CPU work (``work``). Pure functions over text and records; only
``tidings.pipeline`` runs them over the store."""
