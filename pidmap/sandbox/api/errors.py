"""``Status`` errors: what the API answers when it refuses a request (404, 409, 400, 401, 403, 422)."""

from __future__ import annotations

from pidmap.sandbox.api.meta import Obj


class ApiError(Exception):
    """An error the API answers with a ``Status`` body."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> Obj:
        return status_failure(self.code, self.reason, self.message, self.details)


def status_failure(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{resource} "{name}" already exists', {"name": name, "kind": resource}
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, resource: str, name: str, namespace: str) -> ApiError:
    """RBAC's wording, e.g. for ``pods/exec``."""
    kind = resource.partition("/")[0]
    # A create names no object yet: RBAC then says `pods is forbidden: ...`.
    subject = f'{kind} "{name}"' if name else kind
    # A list across namespaces is refused "at the cluster scope".
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "" '
    message += scope
    return ApiError(403, "Forbidden", message, {"name": name, "kind": kind})


def invalid(kind: str, name: str, causes: list[Obj]) -> ApiError:
    summary = ", ".join(f"{cause['field']}: {cause['message']}" for cause in causes)
    message = (
        f'{kind} "{name}" is invalid: {summary}'
        if len(causes) == 1
        else f'{kind} "{name}" is invalid: [{summary}]'
    )
    return ApiError(422, "Invalid", message, {"name": name, "kind": kind, "causes": causes})


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> Obj:
    return {"reason": reason, "message": message, "field": field}
