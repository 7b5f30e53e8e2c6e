"""Chat clients for OpenAI-compatible endpoints."""
