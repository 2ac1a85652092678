"""The molink peer: load a span of layers, serve inference sessions, announce itself in the DHT."""
