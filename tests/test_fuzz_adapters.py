"""Fuzzing the JSON adapters (hypothesis): each mutation of a valid annotation file (a key or an
element deleted, a value replaced by any JSON value, an element repeated, a value wrapped in a
list) either loads into tables or fails with an AnnotationError that names the mutated file, a
record and a field; no other exception gets out of an adapter."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msrvtt_files import QA_CONFIG, qa_root
from test_datasets import HOWTO, YOUCOOK, howto_root, youcook_root
from test_msvd_didemo import _config, _didemo

from pipeline.datasets import load_dataset
from pipeline.datasets.tables import AnnotationError

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)
MUTATIONS = ("delete", "replace", "repeat", "wrap")
# hypothesis warns when the global `random` moves during a draw, which background threads of
# earlier tests can do (conftest's fixture diverts most of their draws)
pytestmark = pytest.mark.usefixtures("main_thread_owns_pythons_global_rng")


def mutate(data: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """`data` with one mutation at a random depth (the top level included)."""
    data = copy.deepcopy(data)
    holder, key = None, None
    node = data
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        holder, key = node, draw(st.sampled_from(keys))
        node = holder[key]
    kind = draw(st.sampled_from(MUTATIONS))
    value = draw(JSON_VALUES) if kind == "replace" else [node] if kind == "wrap" else node
    if holder is None:
        return value if kind in ("replace", "wrap") else data
    if kind == "delete":
        del holder[key]
    elif kind == "repeat" and isinstance(holder, list):
        holder.insert(key, copy.deepcopy(node))
    else:
        holder[key] = value
    return data


# adapter name -> (make a valid root in a folder, config, annotation file relative to the root)
Maker = Callable[[Path], Path]
ADAPTERS: dict[str, tuple[Maker, Any, str]] = {
    "youcook2": (youcook_root, YOUCOOK, "youcookii_annotations_trainval.json"),
    "howto100m": (howto_root, HOWTO, "caption.json"),
    "didemo": (lambda folder: _didemo(folder / "didemo"), _config("didemo"), "train_data.json"),
    "msrvtt_qa": (qa_root, QA_CONFIG, "train_qa.json"),
}


@pytest.fixture(scope="module")
def valid_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    roots = {}
    for name, (make, config, _) in ADAPTERS.items():
        roots[name] = make(tmp_path_factory.mktemp(name))
        load_dataset(config, roots[name])  # the unmutated files load
    return roots


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_mutated_file_loads_or_names_file_record_and_field(
    valid_roots: dict[str, Path], adapter: str, data: st.DataObject
) -> None:
    _, config, relative = ADAPTERS[adapter]
    original = json.loads((valid_roots[adapter] / relative).read_text())
    mutated = mutate(original, data.draw)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "root"
        shutil.copytree(valid_roots[adapter], root)
        (root / relative).write_text(json.dumps(mutated))
        try:
            load_dataset(config, root)
        except AnnotationError as error:
            assert error.file.name == Path(relative).name, str(error)
            assert error.record and error.field, str(error)
