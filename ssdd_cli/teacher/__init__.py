"""Teachers (method.md §4): the frozen encoder, its file, Barlow Twins training and checkpoint import.

* :mod:`.model` — :class:`Teacher`, the frozen encoder with its normalisation;
* :mod:`.files` — :func:`load_teacher` / :func:`save_teacher` (format in :mod:`ssdd_cli.bundle`);
* :mod:`.train` — :class:`Projector` and :func:`train_teacher`;
* :mod:`.checkpoint` — :func:`import_checkpoint` of KRR-ST and solo-learn checkpoints.
"""

from ..config import TeacherConfig
from .checkpoint import import_checkpoint
from .files import load_teacher, save_teacher
from .model import Teacher, build_backbone
from .train import Projector, train_teacher

__all__ = ["Projector", "Teacher", "TeacherConfig", "build_backbone", "import_checkpoint", "load_teacher",
           "save_teacher", "train_teacher"]
