"""Benchmarks: run the agent over a task file, keep every task's outcome and grades in one SQLite store,
and turn the store into statistics, plots and a report.

``runner.run_benchmark`` drives the runs (in this process or on Ray, see ``executors``), ``store`` is
the results file the other modules read, and ``progress`` is what a person watching sees.
"""
