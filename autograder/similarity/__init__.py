"""Which submissions share code, and which copy a known solution: ``python -m autograder similarity``.

Runs offline, on what students wrote in the answer cells only (the release's stubs, signatures,
docstrings and given code never count), with copydetect's MOSS-style winnowing over Python tokens.

- :mod:`autograder.similarity.extract`: each answer cell's own text, the release, known sources;
- :mod:`autograder.similarity.compare`: fingerprints, the score of every pair, the flagged pairs;
- :mod:`autograder.similarity.run`: the whole run over a folder or zip of submissions;
- :mod:`autograder.similarity.report`: ``similarity.csv``, the HTML report, the stdout table.

The varied answers that its tests and benchmark grade live in ``tests/corpus/similarity_samples.py``.
"""

#: The share of one side's answers (all, or one graded function's) that must lie in regions the other
#: side also has for a pair to be flagged. Chosen on the test corpus (tests/test_similarity.py): copies
#: score 0.8 to 1, independent correct solutions below 0.4.
DEFAULT_THRESHOLD = 0.5

#: Shared tokens (characters of copydetect's filtered code) below which nothing is flagged: about two
#: lines of code, so that two short answers that can only be written one way do not flag on their own.
MIN_MATCHING_TOKENS = 60
