"""glace_core.devices: the one device resolver (auto, cpu, cuda[:N], mps) and the process placement."""
from __future__ import annotations

import pytest
import torch

from glace_core import devices
from glace_core.devices import check_device_spec, distributed_context, resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_auto_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "gpu", "cuda:", "cuda:x", "CPU", "", "cuda:-1"])
def test_misspelt_specs_are_refused_by_name(spec):
    with pytest.raises(ValueError, match=f"device {spec!r} is not one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device(spec)
    with pytest.raises(ValueError, match="is not one of"):
        check_device_spec(spec)


def test_non_string_spec_is_refused():
    with pytest.raises(ValueError, match="device must be a string"):
        resolve_device(0)


@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_cuda_names_the_problem(monkeypatch, spec):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=f"device {spec!r} was requested but CUDA is not available"):
        resolve_device(spec)
    assert check_device_spec(spec) == spec  # spelling alone is fine (a config may be checked elsewhere)


def test_cuda_index_beyond_the_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"'cuda:2' was requested but only 2 CUDA device\(s\) exist"):
        resolve_device("cuda:2")


def test_mps_is_refused_where_it_is_not_available(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert not devices.mps_available()
    with pytest.raises(ValueError, match="device 'mps' was requested but MPS .* is not available"):
        resolve_device("mps")


def test_mps_is_accepted_where_it_is_available(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")


def test_single_process_context(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed_context("cpu") == (0, 1, torch.device("cpu"), False)
    with pytest.raises(ValueError, match="is not one of"):
        distributed_context("gpu")


def test_training_config_uses_the_same_spellings():
    from glace_core.training.config import TrainConfig

    TrainConfig(device="mps").validate()  # spelling only: availability is checked when training starts
    TrainConfig(device="cuda:3").validate()
    with pytest.raises(ValueError, match="device 'gpu' is not one of"):
        TrainConfig(device="gpu").validate()
