"""Training: turning curated runs into model inputs and driving the trainers (TRL on one machine, verl on
clusters). The heavy stack (torch, transformers) is the ``train`` extra and is imported lazily, so the
core install can import this package without it."""
