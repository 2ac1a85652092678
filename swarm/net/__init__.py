"""The ground the rest of molink stands on: wire codec, TCP transport, signed peer records, DHT discovery,
address selection and the exception tree.

Nothing here imports from peer/, routing/, models/ or the rest of swarm/ (the CLIs and the public API), so
both sides of the protocol can build on it without arrows pointing back up; ``tests/unit/test_layers.py``
checks that.
"""
