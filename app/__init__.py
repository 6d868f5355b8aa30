"""sluice application layer: session, rendering, recording and the Qt window."""
