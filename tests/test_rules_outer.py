"""Exact checks of the outer updates' and the registry's rules that mutation testing found unpinned (issue 22).

The second mutation pass (reports/notes/mutants.txt) left these alive: Delayed
Nesterov's defaults, its bound on c and its checkpoint names; the text of the
errors a user reads when a fix is misused; the bounds a scenario's outer
arguments are validated against; the registry's import paths; and the digest
of a user's own code, which goes into a run's identity.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch

from sim.outer import PseudoGradient
from sim.outer.base import StalenessFix, check_argument
from sim.outer.delay_comp import DelayCompensation
from sim.outer.delayed_nesterov import DelayedNesterov
from sim.outer.registry import OUTER_UPDATES, construct, import_object, register, resolve, source_digest
from sim.outer.sgd import SGD
from sim.outer.work import Work


class CountingFix(StalenessFix):
    """A user's staleness fix that takes the number of workers (``N: k`` in its spec)."""

    def __init__(self, base, N: int):
        super().__init__(base)
        self.N = N

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        return self.base.step(theta, grad)


# --- Delayed Nesterov (Algorithm 3) -----------------------------------------------------------------

def test_delayed_nesterov_named_alone_gets_the_papers_defaults():
    dn = construct({"name": "delayed_nesterov"}, k=4)
    assert (dn.lr, dn.momentum, dn.N, dn.c) == (0.7, 0.9, 4, 0.0)


def test_delayed_nesterov_accepts_c_equal_to_one_over_n_and_names_the_bound_otherwise():
    assert DelayedNesterov(N=4, c=0.25).c == 0.25  # Algorithm 3: c in [0, 1/N], both ends allowed
    with pytest.raises(ValueError, match=r"^c must lie in \[0, 1/N\] = \[0, 0\.25\] \(Algorithm 3\), got 0\.3$"):
        DelayedNesterov(N=4, c=0.3)
    with pytest.raises(ValueError, match="^N must be >= 1, got 0$"):
        DelayedNesterov(N=0)


def test_delayed_nesterov_checkpoints_its_momentum_and_its_running_sum_by_name():
    dn, theta = DelayedNesterov(lr=0.5, N=2), torch.zeros(2, dtype=torch.float64)
    dn.step(theta, PseudoGradient(torch.tensor([1.0, 2.0], dtype=torch.float64)))
    assert set(dn.state_tensors()) == {"m", "delta_sum"}
    assert torch.equal(dn.state_tensors()["delta_sum"], torch.tensor([1.0, 2.0], dtype=torch.float64))


# --- the errors a misused fix gives ------------------------------------------------------------------

def test_delay_compensation_without_the_dispatch_model_says_what_it_needs():
    fix, theta = DelayCompensation(SGD(lr=0.1)), torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="^delay compensation needs the theta a job was dispatched from$"):
        fix.step(theta, PseudoGradient(torch.ones(2, dtype=torch.float64)))


def test_the_work_fix_names_its_reference_and_what_it_needs():
    with pytest.raises(ValueError, match=r"^reference must be 'H' or 'fleet', got 'round'$"):
        Work(SGD(lr=0.1), reference="round")
    with pytest.raises(ValueError, match=r"^the work fix needs each pseudo-gradient's step counts \(asynchronous schedules give them\)$"):
        Work(SGD(lr=0.1)).step(torch.zeros(2, dtype=torch.float64), PseudoGradient(torch.ones(2, dtype=torch.float64)))


# --- the bounds a scenario's outer arguments are validated against --------------------------------------

@pytest.mark.parametrize("name, value, problem", [
    ("lr", 0.0, "must lie in (0, infinity), got 0.0"),  # an open lower end: a zero rate is a typo
    ("lr", -1, "must lie in (0, infinity), got -1"),
    ("momentum", 1.0, "must lie in [0, 1), got 1.0"),  # momentum 1 never forgets
    ("beta2", 1, "must lie in [0, 1), got 1"),
    ("momentum", -0.1, "must lie in [0, 1), got -0.1"),
    ("momentum", 0.0, None),  # a closed lower end: no momentum is an experiment
    ("exponent", 0, None),
    ("lr", 1e9, None),
    ("lr", "fast", None),  # not a number: the scenario's type check reports it, not the bounds
    ("momentum", True, None),  # a bool is not a number here either
    ("N", -5, None),  # no bound registered
])
def test_outer_arguments_are_checked_against_their_interval(name, value, problem):
    assert check_argument(name, value) == problem


# --- the registry ---------------------------------------------------------------------------------------

def test_a_registered_name_resolves_to_its_class_and_cannot_be_taken_twice(monkeypatch):
    monkeypatch.setattr("sim.outer.registry.OUTER_UPDATES", dict(OUTER_UPDATES))

    class Mine(SGD):
        pass

    assert register("mine_for_a_test")(Mine) is Mine
    assert resolve("mine_for_a_test") is Mine
    with pytest.raises(ValueError, match="^outer update 'mine_for_a_test' registered twice$"):
        register("mine_for_a_test")(Mine)


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"^unknown outer update 'nesterof'; known: adam, async_buffer, delay_comp, "):
        resolve("nesterof")


@pytest.mark.parametrize("path, message", [
    (":SGD", "':SGD' is neither a known name nor an import path like 'pkg.module:Class'"),
    ("sim.outer.sgd:", "'sim.outer.sgd:' is neither a known name nor an import path like 'pkg.module:Class'"),
    ("sim.outer.sgd:SGD:x", "module 'sim.outer.sgd' has no attribute 'SGD:x'"),  # the first colon splits
    ("sim.outer.nowhere:SGD", "cannot import module 'sim.outer.nowhere' (No module named 'sim.outer.nowhere')"),
])
def test_a_bad_import_path_is_one_clear_error(path, message):
    with pytest.raises(ValueError) as error:
        import_object(path)
    assert str(error.value) == message


def test_a_users_fix_reads_k_as_the_number_of_workers_too():
    fix = construct({"name": f"{__name__}:CountingFix", "N": "k"}, k=6, base=SGD(lr=0.1))
    assert isinstance(fix, CountingFix) and fix.N == 6


# --- the digest of a user's code (part of a run's identity) ----------------------------------------------

def _independent_digest(root: Path, files: list[Path]) -> str:
    """The documented layout: for each file in sorted order, its path under the package, NUL, its bytes, NUL."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A package ``mypkg`` (with a sub-package) and a single module ``mymod`` on sys.path, forgotten afterwards."""
    pkg = tmp_path / "mypkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "rules.py").write_text("class Rule:\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "helpers.py").write_text("X = 1\n")
    (tmp_path / "mymod.py").write_text("class Rule:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] in ("mypkg", "mymod")]:
        del sys.modules[name]


def test_a_package_digest_covers_every_python_file_by_its_path(user_code):
    pkg = user_code / "mypkg"
    digest = source_digest("mypkg.rules:Rule")
    assert digest == _independent_digest(pkg, list(pkg.rglob("*.py")))
    (pkg / "sub" / "helpers.py").write_text("X = 2\n")  # another file of the package changes the run
    assert source_digest("mypkg.rules:Rule") != digest
    edited = source_digest("mypkg.rules:Rule")
    (pkg / "sub" / "helpers.py").rename(pkg / "helpers.py")  # so does moving one
    assert source_digest("mypkg.rules:Rule") != edited


def test_a_single_module_digest_is_its_own_file(user_code):
    digest = source_digest("mymod:Rule")
    assert digest == _independent_digest(user_code, [user_code / "mymod.py"])
    (user_code / "mymod.py").write_text("class Rule:\n    x = 1\n")
    assert source_digest("mymod:Rule") != digest


def test_a_namespace_package_over_two_folders_digests_files_outside_the_first_by_name(tmp_path, monkeypatch):
    for folder, body in (("a", "class Rule:\n    pass\n"), ("b", "Y = 1\n")):
        (tmp_path / folder / "nspkg").mkdir(parents=True)
        (tmp_path / folder / "nspkg" / f"part_{folder}.py").write_text(body)
        monkeypatch.syspath_prepend(str(tmp_path / folder))
    try:
        digest = source_digest("nspkg.part_a:Rule")
        assert len(digest) == 64
        (tmp_path / "b" / "nspkg" / "part_b.py").write_text("Y = 2\n")
        assert source_digest("nspkg.part_a:Rule") != digest
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "nspkg"]:
            del sys.modules[name]


def test_a_module_built_into_python_digests_as_no_files():
    assert source_digest("sys:path") == hashlib.sha256().hexdigest()
