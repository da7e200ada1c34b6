"""The long-running server: OSC and WebSocket front ends over one query engine."""
