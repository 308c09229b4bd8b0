"""Repository storage: reads and writes real Mercurial repositories without Mercurial.

Facts: ``shared/spec/storage-and-exchange.md`` §1–7. Vocabulary follows Mercurial's own
storage interfaces (revision, node, linkrev, delta base, rawdata).
"""
