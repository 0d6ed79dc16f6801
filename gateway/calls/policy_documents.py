"""A tenant's consent policy as a JSON document: shown by the API, changed by a PUT.

The document has the keys of the settings file's ``[tenants.consent]``
section (``home``, ``notice_timing``, ``overrides``, ``digits``, ...), with
every default filled in. A new document is checked as the settings file is:
pydantic's types, the overrides against the rules file, every notice file
readable. It gets the version :func:`~gateway.consent.policy.policy_version`
gives, the one each call record then names.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import SHIPPED_NOTICES_DIR, Settings, TenantConsentSettings
from gateway.consent.policy import ConsentPolicy, OverrideError, build_policy
from gateway.media.notice import NoticeAudio, NoticeError, load_notice


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a document was refused: where in it, and why."""

    location: str
    message: str


class PolicyDocumentError(ValueError):
    """The document cannot be a policy; :attr:`problems` says each reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.location}: {p.message}" for p in problems))
        self.problems = problems


def policy_document(consent: TenantConsentSettings) -> dict[str, Any]:
    """The JSON form of a tenant's consent settings, every default filled in."""
    return consent.model_dump(mode="json")


MAX_NOTICE_BYTES = 10_000_000
"""The largest notice file a policy set through the API may name."""


def _notice_roots(settings: Settings) -> list[Path]:
    """Where notices named through the API may live: the shipped ones and, beside the
    settings file, its ``notices`` directory."""
    roots = [SHIPPED_NOTICES_DIR.resolve()]
    if settings.config_dir is not None:
        roots.append((settings.config_dir / "notices").resolve())
    return roots


def _allowed_notice(path: Path, roots: list[Path]) -> bool:
    """A regular file, not too big, inside one of ``roots`` once links are resolved: a
    tenant's administrator must not make the gateway read any other file of the host."""
    try:
        resolved = path.resolve(strict=True)
        info = resolved.stat()
    except (OSError, RuntimeError):
        return False
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_size <= MAX_NOTICE_BYTES
        and any(resolved.is_relative_to(root) for root in roots)
    )


def _shown_path(path: Path, settings: Settings) -> str:
    if settings.config_dir is not None and path.is_relative_to(settings.config_dir):
        return str(path.relative_to(settings.config_dir))
    return path.name


def check_policy_document(
    settings: Settings, tenant: str, document: Any
) -> tuple[TenantConsentSettings, ConsentPolicy, dict[Path, NoticeAudio]]:
    """Validate ``document`` as ``tenant``'s consent settings; the policy and its notices.

    Raises :class:`PolicyDocumentError` with every problem found.
    """
    if not isinstance(document, dict):
        raise PolicyDocumentError([Problem("", "the policy must be a JSON object")])
    try:
        consent = TenantConsentSettings.model_validate(document)
    except ValidationError as error:
        raise PolicyDocumentError(
            [
                Problem(".".join(str(part) for part in item["loc"]), item["msg"])
                for item in error.errors(include_url=False)
            ]
        ) from None
    except ValueError as error:
        raise PolicyDocumentError([Problem("", str(error))]) from None
    tenant_settings = settings.tenant_named(tenant).model_copy(update={"consent": consent})
    try:
        policy = build_policy(tenant_settings, settings.consent_rules(), settings.config_dir)
    except OverrideError as error:
        raise PolicyDocumentError([Problem(f"overrides.{error.key}", str(error))]) from None
    except (ValueError, KeyError) as error:
        raise PolicyDocumentError([Problem("", str(error))]) from None
    notices: dict[Path, NoticeAudio] = {}
    problems = []
    roots = _notice_roots(settings)
    for path in policy.notice_paths():
        if not _allowed_notice(path, roots):
            problems.append(
                Problem(
                    "notices",
                    "a notice set through the API must be a WAV file of at most "
                    f"{MAX_NOTICE_BYTES // 1_000_000} MB under the gateway's notices directory "
                    f"({', '.join(str(root) for root in roots)}); "
                    f"{_shown_path(path, settings)!r} is not one",
                )
            )
            continue
        try:
            notices[path] = load_notice(path)
        except NoticeError:
            problems.append(
                Problem("notices", f"{_shown_path(path, settings)!r} is not a usable WAV notice")
            )
    if problems:
        raise PolicyDocumentError(problems)
    return consent, policy, notices
