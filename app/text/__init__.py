"""Text helpers shared by every stage, each defined once.

- ``sentences``: sentence splitting with exact character spans;
- ``terms``: stopwords, query terms, the Snowball stems of the BM25 index and the light
  suffix stemmer of the extractive engine's scoring;
- ``numbers``: number words and the two number readers (the verifier's, scale-aware, and the
  extractive engine's plain one);
- ``dates``: month and weekday names and the patterns built from them;
- ``citations``: ``[n]`` citation markers.
"""
