"""The outer ring's private parts: sessions, health, alerts and the demo, on the public API only."""
