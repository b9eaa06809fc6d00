"""How the overload scenario sizes its generator: enough processes that none of them is
saturated (a saturated loop stamps answers late and would be measured instead of the
gateway), never more than the CPUs it is pinned to."""

from __future__ import annotations

from chargegw.loadtest import reliability as rel


def test_one_generator_process_on_one_cpu_or_unpinned() -> None:
    assert rel.generator_processes(40_000.0, {1}) == 1
    assert rel.generator_processes(40_000.0, None) == 1
    assert rel.generator_processes(40_000.0, set()) == 1


def test_processes_grow_with_the_rate_up_to_the_cpus() -> None:
    cpus = set(range(8, 16))
    per = rel.RATE_PER_GENERATOR
    assert rel.generator_processes(100.0, cpus) == 1
    assert rel.generator_processes(per, cpus) == 1
    assert rel.generator_processes(per + 1, cpus) == 2
    assert rel.generator_processes(4 * per, cpus) == 4
    assert rel.generator_processes(100 * per, cpus) == 8
