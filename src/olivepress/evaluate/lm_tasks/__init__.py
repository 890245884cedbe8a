"""lm-eval tasks shipped with olivepress: task YAMLs over data in this folder, found by lm-eval's
TaskManager(include_path=TASKS_DIR)."""

from pathlib import Path

TASKS_DIR = Path(__file__).parent
