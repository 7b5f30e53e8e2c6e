"""The agent's tools: ``batch_web_surfer``, ``file``, ``todo`` and ``shell``."""
