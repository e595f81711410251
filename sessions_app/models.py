from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q


class Environment(models.Model):
    """What a user can launch: resources, time limit and back-end settings."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    use_case = models.CharField(max_length=500)
    memory_mb = models.PositiveIntegerField("RAM (MB)", validators=[MinValueValidator(256)])
    cpus = models.PositiveSmallIntegerField("CPUs", validators=[MinValueValidator(1)])
    max_duration_minutes = models.PositiveIntegerField(
        "maximum duration (minutes)", validators=[MinValueValidator(1)]
    )
    priority = models.SmallIntegerField(
        default=0, help_text="Higher is admitted first when resources are short."
    )
    max_concurrent = models.PositiveSmallIntegerField(
        "most at once",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most sessions of this environment at the same time; empty: only the pool "
        "limits it.",
    )
    allowed_groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="launchable_environments",
        help_text="Only members of these groups may launch it; none: everyone admitted to the "
        "portal.",
    )
    enabled = models.BooleanField(default=True)
    order = models.PositiveSmallIntegerField(default=0)
    image = models.CharField(
        max_length=300, blank=True, help_text="Container image (Kubernetes back-end)."
    )
    priority_class_name = models.CharField(
        "priority class",
        max_length=253,
        blank=True,
        validators=[
            RegexValidator(
                r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                "A Kubernetes PriorityClass name: lower-case letters, digits, '-' and '.'.",
            )
        ],
        help_text="Kubernetes PriorityClass of its pods (Kubernetes back-end); give small "
        "environments a higher one, so the cluster places them first when it is full.",
    )
    command = models.JSONField(
        default=list,
        blank=True,
        help_text='Server command as a JSON list (local back-end), e.g. ["jupyter-lab"]. '
        "Empty means jupyter-lab.",
    )
    # Kubernetes extras of its pods (sessions_app/spawners/kube_extras.py; docs/deployment.md).
    kube_node_selector = models.JSONField(
        "node selector",
        default=dict,
        blank=True,
        help_text='Node labels its pods need, as a JSON object, e.g. {"pool": "gpu"}.',
    )
    kube_tolerations = models.JSONField(
        "tolerations",
        default=list,
        blank=True,
        help_text="Taints its pods tolerate, as a JSON list of pod-spec tolerations, e.g. "
        '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}].',
    )
    kube_extended_resources = models.JSONField(
        "extended resources",
        default=dict,
        blank=True,
        help_text="Devices each server gets (limits and requests of its container), as a JSON "
        'object of whole counts, e.g. {"nvidia.com/gpu": 1}. The capacity pool does not '
        "count them: limit the environment's sessions with “most at once”.",
    )
    kube_image_pull_secrets = models.JSONField(
        "image pull secrets",
        default=list,
        blank=True,
        help_text='Secrets (in the sessions\' namespace) for a private registry, e.g. ["ghcr"].',
    )
    kube_volumes = models.JSONField(
        "extra volumes",
        default=list,
        blank=True,
        help_text="Data shares, as a JSON list of pod-spec volumes (persistentVolumeClaim, "
        "configMap, secret, csi…), e.g. "
        '[{"name": "era5", "persistentVolumeClaim": {"claimName": "era5", "readOnly": true}}].',
    )
    kube_volume_mounts = models.JSONField(
        "extra volume mounts",
        default=list,
        blank=True,
        help_text="Where the extra volumes appear, read-only, as a JSON list of volume mounts, "
        'e.g. [{"name": "era5", "mountPath": "/data/era5", "readOnly": true}].',
    )
    kube_env = models.JSONField(
        "extra environment variables",
        default=dict,
        blank=True,
        help_text='Variables of its servers, as a JSON object, e.g. {"ERA5_ROOT": "/data/era5"}.',
    )

    class Meta:
        ordering = ["order", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(memory_mb__gte=256) & Q(cpus__gte=1) & Q(max_duration_minutes__gte=1),
                name="environment_resources_positive",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def max_duration(self) -> timedelta:
        return timedelta(minutes=self.max_duration_minutes)

    @property
    def memory_gb(self) -> float:
        return round(self.memory_mb / 1024, 1)

    def kube_extras(self) -> dict[str, Any]:
        """Its Kubernetes extras, as ``SpawnRequest.backend_settings["kube"]`` holds them."""
        from sessions_app.spawners.kube_extras import FIELDS

        return {key: getattr(self, field) for key, field in FIELDS.items() if getattr(self, field)}

    def clean(self) -> None:
        if not isinstance(self.command, list) or not all(
            isinstance(part, str) and part for part in self.command
        ):
            raise ValidationError({"command": "Give the command as a JSON list of strings."})
        extras = self.kube_extras()
        if extras:
            # The pod the spawner would send, checked with the builders' schemas and rules.
            from sessions_app.spawners.kube_extras import FIELDS, extras_problems

            problems = extras_problems(extras)
            if problems:
                raise ValidationError({FIELDS[key]: messages for key, messages in problems.items()})


class EnvironmentOption(models.Model):
    """A typed option that a user can set when launching one environment."""

    class Kind(models.TextChoices):
        CHOICE = "choice", "choice"
        BOOLEAN = "boolean", "boolean"
        INTEGER = "integer", "integer"
        TEXT = "text", "text"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="options")
    name = models.SlugField(max_length=64)
    label = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    choices = models.JSONField(
        default=list, blank=True, help_text="For choice options: a JSON list of strings."
    )
    default = models.CharField(max_length=200, blank=True)
    min_value = models.IntegerField(null=True, blank=True)
    max_value = models.IntegerField(null=True, blank=True)
    help_text = models.CharField(max_length=300, blank=True)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="option_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.environment.slug}.{self.name}"

    def clean(self) -> None:
        from sessions_app.options import OptionError, parse_option_value

        if self.kind == self.Kind.CHOICE and (
            not isinstance(self.choices, list)
            or not self.choices
            or not all(isinstance(c, str) for c in self.choices)
        ):
            raise ValidationError({"choices": "A choice option needs a JSON list of strings."})
        try:
            parse_option_value(self, self.default)
        except OptionError as exc:
            raise ValidationError({"default": str(exc)}) from None


class Session(models.Model):
    """One user's Jupyter session, from launch to its end."""

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        STARTING = "starting", "starting"
        RUNNING = "running", "running"
        STOPPING = "stopping", "stopping"
        STOPPED = "stopped", "stopped"
        EXPIRED = "expired", "expired"
        FAILED = "failed", "failed"

    class Reason(models.TextChoices):
        NONE = "", "-"
        USER_STOPPED = "user_stopped", "stopped by the user"
        TIME_LIMIT = "time_limit", "time limit reached"
        STAFF_STOPPED = "staff_stopped", "stopped by staff"
        SUSPENDED = "suspended", "user suspended"
        SERVER_DIED = "server_died", "the server stopped on its own"
        BACKEND_ERROR = "backend_error", "the server could not be started"

    ACTIVE_STATES = (State.QUEUED, State.STARTING, State.RUNNING, State.STOPPING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jupyter_sessions"
    )
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="sessions")
    options = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    reason = models.CharField(max_length=32, choices=Reason.choices, default="", blank=True)
    message = models.TextField(blank=True, help_text="Progress while starting, or why it ended.")
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    url = models.CharField(max_length=500, blank=True)
    admitted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the pool had room for it (queued until then)."
    )
    queue_boost = models.SmallIntegerField(
        default=0,
        help_text="Staff's change to this queued session's priority (moves it in the queue).",
    )
    start_requested_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the back-end was asked to start the server: the spawn timeout counts "
        "from here.",
    )
    spawn_owner = models.CharField(
        max_length=255,
        blank=True,
        help_text="The process running this start's spawn task (sessions_app/spawn_owner.py): a "
        "start whose process is gone is sent again.",
    )
    spawner_state = models.JSONField(default=dict, blank=True)
    library_status = models.TextField(
        blank=True, help_text="What became of the notebooks library at this session's start."
    )
    # The server's log is removed with the session's other files when it ends: what its owner
    # may read of it afterwards (the history) is copied here, made safe, as it ends.
    log_tail = models.TextField(
        blank=True,
        help_text="The last lines of the server's log when the session ended, as its owner may "
        "read them: local paths cut to the file name, URLs to their path (no token), control "
        "characters removed (sessions_app/history.py).",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(state__in=["queued", "starting", "running", "stopping"]),
                name="one_active_session_per_user",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(started_at__isnull=False),
                name="session_expiry_needs_start",
            ),
        ]
        indexes = [models.Index(fields=["state", "created_at"], name="session_state_created")]
        # /metrics (portal/metrics.py) describes every session at once: the Session model
        # holds its permission, as no model stands for the figures themselves.
        permissions = [("view_metrics", "Can read the Prometheus metrics")]

    def __str__(self) -> str:
        return f"{self.user} / {self.environment.slug} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def open_url(self) -> str:
        """Where the owner reaches the server: only while it runs (a stopping row keeps its URL)."""
        return self.url if self.state == self.State.RUNNING else ""
