"""Domain errors. Each carries the id it is about; ``app/errors.py`` maps them to HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class IllegalTransition(DomainError):
    """A run was asked to change in a way its lifecycle forbids."""

    def __init__(self, run_id: str, current: Any, target: Any, reason: Any = None) -> None:
        self.run_id = run_id
        self.current = current
        self.target = target
        self.reason = reason
        how = f" ({reason})" if reason is not None else ""
        super().__init__(f"run {run_id} cannot go from {current} to {target}{how}")


class TaskNotFound(DomainError):
    """No task or service of that name is configured."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        super().__init__(f"no task named {task_name!r} is configured")


class RunNotFound(DomainError):
    """No run of that id exists (or not for that task)."""

    def __init__(self, run_id: str, task_name: str | None = None) -> None:
        self.run_id = run_id
        self.task_name = task_name
        where = f" for task {task_name!r}" if task_name else ""
        super().__init__(f"no run {run_id!r}{where}")


class TriggerForbidden(DomainError):
    """The task does not accept API triggers (``api_trigger = false``)."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        super().__init__(
            f"task {task_name!r} has api_trigger = false; it runs only on its schedule"
        )


class NotTriggerable(DomainError):
    """The name is a service: the supervisor keeps it running, it is not triggered."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        super().__init__(
            f"{task_name!r} is a service; use POST /api/tasks/{task_name}/restart instead"
        )


class TriggerSkipped(DomainError):
    """The overlap policy turned the trigger away; the ``skipped`` run was recorded."""

    def __init__(self, task_name: str, run_id: str, policy: str) -> None:
        self.task_name = task_name
        self.run_id = run_id
        super().__init__(
            f"task {task_name!r} is already running (on_overlap = {policy!r}); "
            f"the trigger was recorded as skipped run {run_id}"
        )


class ServiceInstance(DomainError):
    """The run is an instance of a service, which the supervisor keeps alive."""

    def __init__(self, task_name: str, run_id: str) -> None:
        self.task_name = task_name
        self.run_id = run_id
        super().__init__(
            f"run {run_id} is an instance of service {task_name!r}; stop or restart the "
            f"service (POST /api/tasks/{task_name}/stop or /restart) instead"
        )


class NotAService(DomainError):
    """Restart and stop of a whole task apply to services only."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        super().__init__(
            f"{task_name!r} is a task, not a service; stop its runs with "
            f"POST /api/tasks/{task_name}/runs/RUN_ID/stop"
        )


class RunNotActive(DomainError):
    """The run has already ended, so it cannot be stopped."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} is {status}; only pending or running runs can stop")


class RunStillActive(DomainError):
    """The run is pending or running, so it cannot be deleted yet."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} is {status}; stop it before deleting it")


class InvalidFilter(DomainError):
    """A listing filter value is not one the API knows."""

    def __init__(self, field: str, value: str, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(message)


class StoreUnavailable(DomainError):
    """The database could not be reached; the operation may be retried."""


class NotifierNotFound(DomainError):
    """No ``[notifiers.NAME]`` of that name is configured."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no notifier named {name!r} is configured")


class NotificationNotFound(DomainError):
    """No delivery of that id exists."""

    def __init__(self, delivery_id: str) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"no notification {delivery_id!r}")


class NotificationNotDead(DomainError):
    """Only a ``dead`` delivery can be retried by hand."""

    def __init__(self, delivery_id: str, status: Any) -> None:
        self.delivery_id = delivery_id
        super().__init__(
            f"notification {delivery_id} is {status}, not dead: only dead ones can be retried"
        )
