"""Test doubles that stand in for the outside world (the model endpoint, search providers, web pages).

Import each from its own module, e.g. ``from tests.fakes.openai_server import Reply``.
"""
