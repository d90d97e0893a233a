"""Render device selection and GPU workers, without a GPU (pure functions and job files)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthloop.errors import SynthloopError
from synthloop.farm.executors import gpu_device, gpu_worker_env, k8s_indexed_job, slurm_script, worker_command
from synthloop.farm.mps import CONTROL
from synthloop.farm.plan import FarmError, load_plan, plan_job
from synthloop.generators.blender_renderer import worker_python
from synthloop.generators.devices import CyclesDevice, DeviceError, select_devices

CPU = CyclesDevice("CPU", "AMD EPYC", "CPU")
CUDA0 = CyclesDevice("CUDA", "NVIDIA H100", "CUDA_NVIDIA H100_0000:01:00")
CUDA1 = CyclesDevice("CUDA", "NVIDIA H100", "CUDA_NVIDIA H100_0000:02:00")
OPTIX0 = CyclesDevice("OPTIX", "NVIDIA H100", "CUDA_NVIDIA H100_0000:01:00_OptiX")
HIP0 = CyclesDevice("HIP", "AMD Radeon", "HIP_AMD_0000:03:00")


def test_cpu_is_always_the_cpu():
    for devices in ([CPU], [CPU, CUDA0, OPTIX0]):
        choice = select_devices("cpu", devices)
        assert choice.scene_device == "CPU" and choice.compute_device_type == "NONE"
        assert choice.enabled == ("CPU",) and choice.warning is None


def test_explicit_gpu_backend_enables_only_its_gpus():
    cuda = select_devices("cuda", [CPU, CUDA0, CUDA1, OPTIX0])
    assert (cuda.scene_device, cuda.compute_device_type) == ("GPU", "CUDA")
    assert cuda.enabled == (CUDA0.id, CUDA1.id) and cuda.warning is None
    optix = select_devices("optix", [CPU, CUDA0, OPTIX0])
    assert optix.compute_device_type == "OPTIX" and optix.enabled == (OPTIX0.id,)
    assert "NVIDIA H100" in optix.label


@pytest.mark.parametrize("requested", ["cuda", "optix"])
def test_explicit_gpu_without_gpu_is_a_one_line_error(requested):
    with pytest.raises(DeviceError) as e:
        select_devices(requested, [CPU, HIP0])
    msg = str(e.value)
    assert msg.startswith("render.device: ") and "\n" not in msg
    assert requested.upper() in msg and "CPU AMD EPYC" in msg


def test_auto_prefers_optix_then_cuda_then_warns_on_cpu():
    assert select_devices("auto", [CPU, CUDA0, OPTIX0]).compute_device_type == "OPTIX"
    assert select_devices("auto", [CPU, CUDA0]).compute_device_type == "CUDA"
    fallback = select_devices("auto", [CPU, HIP0])
    assert fallback.scene_device == "CPU" and fallback.enabled == ("CPU",)
    assert fallback.warning is not None and "no CUDA/OptiX GPU" in fallback.warning


def test_unknown_device_is_an_error():
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        select_devices("gpu", [CPU])


def test_each_gpu_worker_sees_one_gpu():
    envs = [gpu_worker_env(w, 4, base={"PATH": "/bin"})["CUDA_VISIBLE_DEVICES"] for w in range(6)]
    assert envs == ["0", "1", "2", "3", "0", "1"]
    inherited = {"CUDA_VISIBLE_DEVICES": "5,7"}
    assert [gpu_worker_env(w, 2, base=inherited)["CUDA_VISIBLE_DEVICES"] for w in range(2)] == ["5", "7"]
    assert gpu_worker_env(0, 2, base={"PATH": "/bin"})["PATH"] == "/bin"


def test_gpu_workers_render_on_a_gpu_device():
    assert gpu_device("cpu", None) == "cuda"
    assert gpu_device("optix", None) == "optix"
    assert gpu_device("cpu", "auto") == "auto"
    with pytest.raises(FarmError, match="--gpus needs a GPU device"):
        gpu_device("cuda", "cpu")


def test_worker_command_passes_the_device(tmp_path):
    cmd = worker_command(tmp_path, 3, 2, python="py", device="optix")
    assert cmd[-2:] == ["--device", "optix"] and "--quiet" in cmd
    assert "--device" not in worker_command(tmp_path, 3, 2, python="py")


def test_plan_device_from_recipe_or_option_and_gpu_job_files(tmp_path):
    cpu_job, gpu_job = tmp_path / "cpu", tmp_path / "gpu"
    plan_job("shapes", 6, 0, 3, cpu_job)
    plan_job("shapes", 6, 0, 3, gpu_job, device="cuda")
    assert load_plan(cpu_job).device == "cpu" and load_plan(gpu_job).device == "cuda"
    with pytest.raises(FarmError, match="different job"):
        plan_job("shapes", 6, 0, 3, gpu_job, device="optix")

    for job, gpu in ((cpu_job, False), (gpu_job, True)):
        script = tmp_path / f"{job.name}.sbatch"
        script.write_text(slurm_script(job, threads=2))
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert ("#SBATCH --gres=gpu:1" in script.read_text()) is gpu
        container = yaml.safe_load(k8s_indexed_job(job, threads=2))["spec"]["template"]["spec"]["containers"][
            0
        ]
        resources = container["resources"]
        if gpu:
            assert resources["limits"]["nvidia.com/gpu"] == "1" == resources["requests"]["nvidia.com/gpu"]
        else:
            assert "nvidia.com/gpu" not in resources["limits"]


def test_unknown_device_names_are_user_errors(tmp_path):
    from synthloop.errors import SynthloopError
    from synthloop.farm.executors import run_local

    with pytest.raises(SynthloopError, match="--device: unknown device 'gpu'"):
        plan_job("shapes", 2, 0, 1, tmp_path / "job", device="gpu")
    plan_job("shapes", 2, 0, 1, tmp_path / "job")
    with pytest.raises(SynthloopError, match="--device: unknown device 'gpu'"):
        run_local(tmp_path / "job", device="gpu", quiet=True)
    with pytest.raises(FarmError, match="--gpus needs a GPU device"):
        run_local(tmp_path / "job", gpus=2, device="cpu", quiet=True)
    with pytest.raises(SynthloopError, match="unknown device 'gpu'"):
        gpu_device("cpu", "gpu")


class _FakeWorker:
    """A worker process that exits at once with no output; notes the environment it got."""

    started: list[dict[str, str]] = []

    def __init__(self, cmd: list[str], *, env: dict[str, str], **_: object) -> None:
        _FakeWorker.started.append(env)
        self.stdout, self.stderr = io.StringIO(""), io.StringIO("")

    def wait(self) -> int:
        return 0


def test_several_workers_share_each_gpu(tmp_path, monkeypatch):
    from synthloop.farm import executors

    plan_job("shapes", 8, 0, 8, tmp_path / "job")
    monkeypatch.setattr(executors.subprocess, "Popen", _FakeWorker)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _FakeWorker.started = []
    summary = executors.run_local(tmp_path / "job", gpus=2, workers_per_gpu=2, device="cuda", quiet=True)
    assert sorted(summary.shards_ok) == list(range(8))
    first = [env["CUDA_VISIBLE_DEVICES"] for env in _FakeWorker.started[:4]]
    assert first == ["0", "1", "0", "1"]  # four workers at once, two on each GPU
    for bad, words in (
        ({"gpus": 0, "workers_per_gpu": 2}, "needs --gpus"),
        ({"gpus": 1, "workers_per_gpu": 0}, ">= 1"),
    ):
        with pytest.raises(FarmError, match=words):
            executors.run_local(tmp_path / "job", quiet=True, **bad)


def _fake_mps_control(tmp_path, monkeypatch, rc: int = 0) -> Path:
    """A `nvidia-cuda-mps-control` on PATH that logs each call (arguments, stdin, pipe folder);
    other processes started through `subprocess.Popen` are :class:`_FakeWorker`."""
    real_popen = subprocess.Popen

    def popen(cmd, **kw):
        return real_popen(cmd, **kw) if str(cmd[0]).endswith(CONTROL) else _FakeWorker(cmd, **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    log = tmp_path / "mps.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "nvidia-cuda-mps-control"
    stdin = "cat" if rc == 0 else "true"
    exe.write_text(
        "#!/bin/sh\n"
        f"echo \"args=$* pipe=$CUDA_MPS_PIPE_DIRECTORY stdin=$({stdin} | tr -d '\\n')\" >> {log}\n"
        + (f"echo 'An instance of this daemon is already running' >&2\nexit {rc}\n" if rc else "")
    )
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_mps_runs_the_gpu_workers_under_a_private_daemon(tmp_path, monkeypatch):
    """`--mps`: a daemon with its own pipe folder is started before the workers, they get its
    folders in their environment, and it is told to quit (and its folder removed) afterwards."""
    from synthloop.farm import executors

    plan_job("shapes", 4, 0, 4, tmp_path / "job")
    log = _fake_mps_control(tmp_path, monkeypatch)
    _FakeWorker.started = []
    summary = executors.run_local(
        tmp_path / "job", gpus=1, workers_per_gpu=2, device="cuda", mps=True, quiet=True
    )
    assert sorted(summary.shards_ok) == [0, 1, 2, 3]
    start, stop = log.read_text().splitlines()
    pipe = start.split("pipe=")[1].split()[0]
    assert start.startswith("args=-d ") and stop == f"args= pipe={pipe} stdin=quit"
    assert {env["CUDA_MPS_PIPE_DIRECTORY"] for env in _FakeWorker.started} == {pipe}
    assert not Path(pipe).exists()  # the private folder is gone after the run
    with pytest.raises(FarmError, match="--mps: needs --gpus"):
        executors.run_local(tmp_path / "job", mps=True, quiet=True)


def test_mps_that_cannot_start_is_one_error_and_no_worker_runs(tmp_path, monkeypatch):
    from synthloop.farm import executors

    plan_job("shapes", 2, 0, 2, tmp_path / "job")
    _fake_mps_control(tmp_path, monkeypatch, rc=1)
    _FakeWorker.started = []
    with pytest.raises(FarmError, match="--mps: the MPS daemon did not start: An instance"):
        executors.run_local(tmp_path / "job", gpus=1, mps=True, quiet=True)
    assert _FakeWorker.started == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FarmError, match="nvidia-cuda-mps-control not found"):
        executors.run_local(tmp_path / "job", gpus=1, mps=True, quiet=True)


def test_worker_python_comes_from_the_environment(tmp_path):
    """``SYNTHLOOP_BLENDER_PYTHON`` picks the worker's interpreter; a bad value is one clear error."""
    assert worker_python({}) == sys.executable
    assert worker_python({"SYNTHLOOP_BLENDER_PYTHON": "  "}) == sys.executable
    launcher = tmp_path / "py311.sh"
    launcher.write_text('#!/bin/sh\nexec python3 "$@"\n')
    launcher.chmod(0o755)
    assert worker_python({"SYNTHLOOP_BLENDER_PYTHON": str(launcher)}) == str(launcher)
    plain = tmp_path / "not_executable"
    plain.write_text("")
    for bad in (plain, tmp_path / "missing"):
        with pytest.raises(SynthloopError, match="SYNTHLOOP_BLENDER_PYTHON=.*not an executable file"):
            worker_python({"SYNTHLOOP_BLENDER_PYTHON": str(bad)})
