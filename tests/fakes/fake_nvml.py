"""A fake NVML (no NVIDIA GPU here): a module answering as pynvml (nvidia-ml-py) does, installed in
sys.modules as 'pynvml' by a test's fake_nvml fixture (tests/test_telemetry.py), so trbench's sampler reads it
as it reads a real GPU."""

from __future__ import annotations

import threading
import time
import types

MIB = 1024**2


class FakeNVML(types.ModuleType):
    """Answers like pynvml: power in mW, the total energy counter in mJ (integrated from the set
    power on the same perf_counter clock the sampler uses), NVMLError_NotSupported for the energy
    counter on GPUs built with counter=False, NVMLError from nvmlInit when the driver is 'missing'."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's name)
        def __str__(self) -> str:
            return "Not Supported"

    def __init__(self, gpus: list[dict] | None = None, init_error: str | None = None):
        super().__init__("pynvml")
        self.gpus = [{"name": f"Fake GPU {i}", "power_w": 100.0, "counter": True, "mem_mib": 1000.0, "util": 50,
                      "temp": 40, **g} for i, g in enumerate(gpus or [])]
        self.init_error = init_error
        self.initialized = 0
        self._lock = threading.Lock()
        now = time.perf_counter()
        for g in self.gpus:
            g["_energy_j"], g["_since"] = 1_000_000.0, now  # a counter that did not start at 0

    def set_power(self, index: int, watts: float) -> None:
        with self._lock:
            g = self.gpus[index]
            now = time.perf_counter()
            g["_energy_j"] += g["power_w"] * (now - g["_since"])
            g["power_w"], g["_since"] = watts, now

    # --- the pynvml surface the sampler uses --------------------------------------------------

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.gpus[h]["name"]

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return int(round(self.gpus[h]["power_w"] * 1000))  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        g = self.gpus[h]
        if not g["counter"]:
            raise self.NVMLError_NotSupported()
        with self._lock:
            return int((g["_energy_j"] + g["power_w"] * (time.perf_counter() - g["_since"])) * 1000)  # mJ

    def nvmlDeviceGetUtilizationRates(self, h: int):
        if self.gpus[h].get("util_error"):
            raise self.NVMLError("Unknown Error")
        return types.SimpleNamespace(gpu=self.gpus[h]["util"], memory=10)

    def nvmlDeviceGetMemoryInfo(self, h: int):
        used = int(self.gpus[h]["mem_mib"] * MIB)
        return types.SimpleNamespace(total=80 * 1024 * MIB, used=used, free=80 * 1024 * MIB - used)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self.gpus[h]["temp"]
