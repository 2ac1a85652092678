"""Client side of molink: read the swarm from the DHT, plan routes, run inference sessions."""
