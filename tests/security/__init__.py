"""The attack suite: each test reproduces an attack against the agent, its tools, its server or its run
store and checks that it is held (see docs/security.md)."""
