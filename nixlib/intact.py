"""After a step: the input objects it was given are still exactly what their names say.

Store objects are read-only (0444/0555), but Unix permissions do not bind root, and an
object's owner can `chmod u+w` it: a step running without the sandbox can change its own
inputs. Such a change would poison every later step that uses the object, in every pipeline
sharing the store. So once a step's processes have all ended, each input object it
referenced is checked again. That is cheap: the stat memo's signature covers every entry's
ctime, which no tool can set back, so an untouched object is confirmed by lstat calls alone and
only a changed one is hashed. A changed object is quarantined (never served again; its
producer runs again next time) and the step fails, so nothing it produced from the changed
bytes is stored either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nixlib.errors import StepFailed
from nixlib.recipe import Recipe
from nixlib.runner import Build
from nixlib.store import Store


def check_inputs_intact(store: Store, recipe: Recipe, realised: Mapping[str, str], build: Build) -> None:
    """Fail the step if it changed one of its input objects (which is then quarantined), or if one is gone.

    Gone counts as changed: a step that changed its input, read the changed bytes and then removed the object
    (its owner may, in the sticky store/) would otherwise be recorded as the result of the true input, and served
    once that input is rebuilt. Nothing else removes an input while the step runs: every front door registers
    its inputs as temp roots before the step starts, so `nw gc` keeps them, and a lookup only quarantines an
    object that no longer hashes to its name."""
    for h in dict.fromkeys(i.obj or realised.get(i.token) for i in recipe.inputs):
        if h is None:
            continue
        if not os.path.lexists(store.object_path(h)):
            raise StepFailed(
                recipe.name,
                f"its input object {h} was removed while it ran (store objects are read-only, but their owner may "
                "remove them; a lookup elsewhere also moves one that was changed to quarantine/), so what it read "
                "cannot be vouched for; nothing of this step was stored. The step "
                "that produced the input runs again next time. Copy an input to $out or $TMPDIR before changing "
                "or removing it, or run the step with sandbox=True, where inputs are mounted read-only",
                str(build.log),
            )
        if not store.has(h):
            raise StepFailed(
                recipe.name,
                f"it changed its input object {h} (store objects are read-only, but not to root or to an owner "
                "who makes them writable). The object was quarantined and will be rebuilt by the step that "
                "produced it; nothing of this step was stored. Copy an input to $out or $TMPDIR before changing "
                "it, or run the step with sandbox=True, where inputs are mounted read-only",
                str(build.log),
            )
