"""The hardware a record names (``pf.experiments.record``): the CPU's identity beyond its
name, and the device a table or figure shows."""

import platform

from pf.experiments.record import CPU_FEATURES, cpu_identity, hardware_name
from fakes import ENVIRONMENT

# One processor of a KVM guest on a Zen 5, as /proc/cpuinfo lists each (flags shortened).
PROCESSOR = """processor\t: {number}
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni
"""
ZEN5 = "\n".join(PROCESSOR.format(number=number) for number in range(2))


def test_the_cpu_identity_reads_family_model_and_the_features_that_pick_kernels(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ZEN5)
    cpu = cpu_identity(cpuinfo)
    assert {key: cpu[key] for key in ("name", "vendor", "family", "model", "stepping")} == {
        "name": "AMD EPYC", "vendor": "AuthenticAMD", "family": 26, "model": 2, "stepping": 1}
    assert cpu["features"] == ["avx2", "avx512f", "avx512_bf16"]  # in CPU_FEATURES' order
    assert cpu["isa"] and isinstance(cpu["isa"], str)  # torch's pick on this machine


def test_a_platform_without_cpuinfo_gives_the_name_it_has_and_no_numbers(tmp_path):
    cpu = cpu_identity(tmp_path / "absent")
    assert cpu["name"] == (platform.processor() or platform.machine())
    assert [cpu[key] for key in ("vendor", "family", "model", "stepping")] == [None] * 4
    assert cpu["features"] == []


def test_this_machines_identity_lists_only_known_features():
    assert set(cpu_identity()["features"]) <= set(CPU_FEATURES)


def test_the_device_name_carries_family_and_model_where_the_record_has_them(tmp_path):
    assert hardware_name(ENVIRONMENT) == "Test CPU"  # a record from before cpu_identity
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ZEN5)
    cpu = cpu_identity(cpuinfo)
    assert (hardware_name({**ENVIRONMENT, "device_name": "AMD EPYC", "cpu": cpu})
            == "AMD EPYC (family 26, model 2)")
    on_gpu = {**ENVIRONMENT, "device": "cuda:0", "device_name": "NVIDIA H100", "cpu": cpu}
    assert hardware_name(on_gpu) == "NVIDIA H100"  # the host CPU is not the device
