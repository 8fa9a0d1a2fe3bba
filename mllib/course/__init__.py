"""Course delivery: exercises and their checks, student release, Colab/Binder launch, execution, grading.

The exercise convention (every notebook author follows it; ``python -m mllib course check``
enforces it)
=======================================================================================

1. **Exercise cell** -- a code cell that defines the learner's function. The answer sits
   between nbgrader's markers, indented like the code it replaces::

       def confidence_interval(values):
           \"\"\"values: [n] per-task accuracies -> (mean, half_width).\"\"\"
           ### BEGIN SOLUTION
           mean = values.mean()
           return mean, 1.96 * values.std() / len(values) ** 0.5
           ### END SOLUTION

   Cell metadata::

       "nbgrader": {"grade": false, "solution": true, "locked": false, "task": false,
                    "grade_id": "ci95", "schema_version": 3}

   Keep the ``def`` line and the docstring outside the markers: the student version keeps
   them and replaces only the region by ``# YOUR CODE HERE`` / ``raise NotImplementedError()``.

2. **Check cell** -- the very next code cell; it calls one function of ``mllib.checks`` on the
   learner's function and nothing else::

       checks.check_confidence_interval(confidence_interval)

   Cell metadata (``grade_id`` is the exercise's id plus ``_check``)::

       "nbgrader": {"grade": true, "solution": false, "locked": true, "points": 2,
                    "grade_id": "ci95_check", "schema_version": 3}

3. **Later cells never use the learner's function** (nor any other name the exercise cell
   binds): they call the ``mllib`` reference implementation, so a student notebook with
   unsolved exercises still runs to the end. ``course check`` flags every violation.

   Notebooks written with nbformat can get both cells, metadata included, from
   ``mllib.course.exercise_cells(grade_id, solution_source, check_source, points)``.

4. Add a check function for a new exercise to its notebook's module,
   ``mllib/checks/nbNN_<notebook>.py`` (pattern in the docstring of ``mllib/checks/core.py``),
   and re-export it from ``mllib/checks/__init__.py``.

5. Leave the two generated cells alone: the Markdown cell tagged ``colab-badge`` (after the
   title) and the first code cell, tagged ``colab-setup``; ``course sync`` writes them.

Modules, one job each: ``config`` (``mllib/course_config.json``), ``nbio`` (reading and writing
notebooks), ``exercises`` (finding exercises, the convention, stripping solutions), ``student``
(the student release), ``colab`` (badges, install cell, GPU metadata, README block),
``execute`` (running notebooks, time and peak memory), ``grading`` (scores and the
student-release verification), ``figures`` (every figure a notebook shows: data in view, valid
limits, no empty axes, fonts >= 8 pt as displayed, no overlaps, legends off the data; run during
nbval by ``nbval_figures`` and during ``course execute``), ``lint`` (maths, images,
cross-references, code width, stored outputs, kernelspec), ``claims`` (an ``assert`` near every
quantitative claim of the Markdown), ``times`` (measured run times into headers, README and
instructors' page) and ``author`` (an author's round: every step above that regenerates or checks
the course, in order, with one summary: ``python -m mllib course author``). The command line is
``python -m mllib course --help``.
"""
from __future__ import annotations

from .colab import check_course, sync_course, sync_notebook
from .config import CourseConfig, load_config
from .exercises import (check_metadata, exercise_cells, find_exercises, lint_exercises, solution_metadata,
                        strip_solutions)
from .execute import execute_notebooks, run_notebook
from .grading import format_grade_table, grade_notebook, verify_student_build
from .student import build_student, student_version

__all__ = [
    "CourseConfig", "load_config", "exercise_cells", "solution_metadata", "check_metadata", "find_exercises", "lint_exercises", "strip_solutions", "student_version",
    "build_student", "sync_notebook", "sync_course", "check_course", "run_notebook", "execute_notebooks",
    "grade_notebook", "format_grade_table", "verify_student_build",
]
