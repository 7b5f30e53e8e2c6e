"""The tiny offline tokenizer the training tests share lives in the package (``deepresearch.train.tiny``,
also behind ``--model tiny``); this re-export keeps the tests' imports short."""

from deepresearch.train.tiny import SPECIAL, TEMPLATE, TOOLS, tiny_model, tiny_tokenizer

__all__ = ["SPECIAL", "TEMPLATE", "TOOLS", "tiny_model", "tiny_tokenizer"]
