"""The sans-IO core of the frame-based protocol (hgrpc): frames, CBOR, streams, reactors.

Nothing here does I/O: callers feed bytes or frames in and get typed events and bytes out.
Facts: ``shared/spec/wire-protocol.md`` §1–4.
"""
