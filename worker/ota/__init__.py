"""Driving OTA rollouts from a process: the signed executor, the device channel."""

from worker.ota.runtime import drive_rollout

__all__ = ["drive_rollout"]
