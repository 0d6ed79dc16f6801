"""A tenant's consent policy as a JSON document: shown by the API, changed by a PUT.

The document has the keys of the settings file's ``[tenants.consent]``
section (``home``, ``notice_timing``, ``overrides``, ``digits``, ...), with
every default filled in. A new document is checked as the settings file is:
pydantic's types, the overrides against the rules file, every notice file
readable. It gets the version :func:`~gateway.consent.policy.policy_version`
gives, the one each call record then names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.config import Settings, TenantConsentSettings
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


def check_policy_document(
    settings: Settings, tenant: str, document: Any
) -> tuple[TenantConsentSettings, ConsentPolicy, dict[str, NoticeAudio]]:
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
    notices: dict[Any, NoticeAudio] = {}
    problems = []
    for path in policy.notice_paths():
        try:
            notices[path] = load_notice(path)
        except NoticeError as error:
            problems.append(Problem("notices", str(error)))
    if problems:
        raise PolicyDocumentError(problems)
    return consent, policy, notices
