"""The Checklist-style Judger: rubric grading, ResearchRubrics scoring, and the strict RL reward."""
