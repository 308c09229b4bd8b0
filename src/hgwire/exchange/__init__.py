"""Exchange formats: changegroups, bundle2 and stream clones (spec storage §8-§11).

Byte formats between repository data and streams, with no network code: transports and
commands feed readers in (anything with ``read(n)``) and send the iterators of bytes these
modules return.

* :mod:`~hgwire.exchange.changegroup`: cg1/cg2/cg3 framing, a streaming unpacker, the
  packer, generation of a changegroup from a repository (``findoutgoing``,
  ``makechangegroup``) and transactional application (``apply``).
* :mod:`~hgwire.exchange.bundle2`: the ``HG20`` encoder/decoder, capabilities, part
  payload codecs, HG10 files, and the legacy-protocol operations built on them:
  ``getbundle`` (pull/clone reply), ``unbundle`` (push processing with its reply),
  ``pushkey``/``listkeys``/``check_heads``, and the client side (``apply_pull``,
  ``read_push_reply``, ``applybundle`` for bundle files of any kind).
* :mod:`~hgwire.exchange.streamclone`: store snapshots, ``stream_out`` (v1), ``HGS1``
  files and the ``stream2`` part (v2), and applying streamed files.
"""
