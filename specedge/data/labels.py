"""Label sanity on load: refuse labels that would silently change the number of classes.

Where a file does not declare its classes (IDX folders, ``.npz`` files without ``class_names``),
the class count is one past the largest label, so one corrupt label byte in MNIST made a
43-class model without a word (foundation review, "Silent training failure"). Before the count
is inferred, labels are checked: a label value far rarer than a typical class (under 1% of the
median class size), or a largest label implying more than twice as many classes as there are
distinct labels, is refused with the file, the value, how often it occurs and where it first
occurs. Where the classes are declared, labels outside ``0..K-1`` are refused the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from specedge.errors import DatasetError

__all__ = ["check_labels"]

#: A label value rarer than this share of the median class size is taken for a corrupt byte.
RARE_SHARE = 0.01


def check_labels(labels: Mapping[str, np.ndarray], *, num_classes: int | None, hint: str = "") -> int:
    """The number of classes of non-negative integer ``labels`` (keyed by the file they come from).

    Args:
        labels: each source's labels, keyed by the name error messages give it (a file path).
        num_classes: the declared number of classes, or None to infer one past the largest label.
        hint: appended to the error for stray labels, e.g. how to declare the classes instead.

    Raises:
        DatasetError: a label lies outside ``0..num_classes-1``, or (inferred count) a label
            value looks like corruption rather than a class.
    """
    if num_classes is not None:
        for source, values in labels.items():
            outside = np.flatnonzero(values >= num_classes)
            if outside.size:
                first = int(outside[0])
                raise DatasetError(
                    f"{source}: label {int(values[first])} at item {first} is outside 0..{num_classes - 1} "
                    f"({num_classes} classes); {outside.size} label(s) are out of range"
                )
        return num_classes
    everything = np.concatenate([np.asarray(v, dtype=np.int64) for v in labels.values()])
    if everything.size == 0:
        return 1
    values, counts = np.unique(everything, return_counts=True)
    inferred = int(values[-1]) + 1
    median = float(np.median(counts))
    stray = values[counts < RARE_SHARE * median]
    if stray.size == 0 and inferred > 2 * len(values):
        stray = values[-1:]  # the largest label alone stretches the class count
    if stray.size == 0:
        return inferred
    value = int(stray[-1])
    source, first = next((s, int(np.flatnonzero(v == value)[0])) for s, v in labels.items() if (v == value).any())
    count = int(counts[values == value][0])
    raise DatasetError(
        f"{source}: label {value} occurs {count} time(s) (first at item {first}) while a typical class has "
        f"{median:.0f} items; it would make {inferred} classes from {len(values)} distinct labels; "
        f"is the label file corrupt?{hint}"
    )
