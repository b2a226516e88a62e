"""How `make test` collects: the `serial` tests from tests/real_robot only (a serial test elsewhere is refused at
collection instead of silently never running), and modules with a `slow` test first, each kept whole."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def conftest(pytestconfig):
    """tests/conftest.py as pytest loaded it, with the hook it calls."""
    return next(plugin for plugin in pytestconfig.pluginmanager.get_plugins()
                if getattr(plugin, "__file__", None) == str(TESTS / "conftest.py"))


def item(path: Path, serial: bool = False, slow: bool = False, name: str = "test_x") -> SimpleNamespace:
    marks = {"serial": serial, "slow": slow}
    return SimpleNamespace(nodeid=f"{path.relative_to(TESTS)}::{name}", path=path,
                           get_closest_marker=lambda mark: getattr(pytest.mark, mark) if marks.get(mark) else None)


def test_a_serial_test_outside_real_robot_is_refused_and_one_inside_is_kept(conftest):
    inside = [item(TESTS / "real_robot" / "test_a.py", serial=True), item(TESTS / "core" / "test_b.py", serial=False)]
    conftest.pytest_collection_modifyitems(None, inside)  # nothing to refuse
    with pytest.raises(pytest.UsageError, match=r"core/test_c.py::test_x is marked serial: serial tests belong under "
                                                r"tests/real_robot"):
        conftest.pytest_collection_modifyitems(None, [*inside, item(TESTS / "core" / "test_c.py", serial=True)])
    assert conftest.SERIAL_FOLDER == TESTS / "real_robot"


def test_make_test_collects_its_serial_tests_from_that_folder():
    makefile = (TESTS.parent / "Makefile").read_text()
    assert "-m serial --durations=5 tests/real_robot\n" in makefile  # the folder the hook keeps them in


def test_modules_with_a_slow_test_come_first_each_whole_in_their_own_order(conftest):
    fast, mixed, slow = (TESTS / "core" / f"test_{name}.py" for name in ("fast", "mixed", "slow"))
    items = [item(fast, name="a"), item(mixed, name="b"), item(mixed, slow=True, name="c"), item(mixed, name="d"),
             item(fast, name="e"), item(slow, slow=True, name="f")]
    conftest.pytest_collection_modifyitems(None, items)
    assert [i.nodeid.split("::")[1] for i in items] == ["b", "c", "d", "f", "a", "e"]
