"""Pure helpers for components, modals and autocomplete payloads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import errors
from .state import AppCommandRecord


def focused_options(
    command: AppCommandRecord, path: Sequence[str], values: Mapping[str, Any], focused: str
) -> list[dict[str, Any]]:
    schema = command.options
    nesting: list[tuple[int, str]] = []
    for part in path:
        group = next((o for o in schema if o.get("name") == part), None)
        if group is None:
            raise LookupError(f"/{command.name} has no subcommand {part!r}")
        nesting.append((int(group["type"]), part))
        schema = group.get("options") or []
    by_name = {o["name"]: o for o in schema}
    if focused not in by_name:
        raise LookupError(f"/{command.name} has no option {focused!r}")
    if not by_name[focused].get("autocomplete"):
        raise AssertionError(f"option {focused!r} of /{command.name} has no autocomplete")
    options: list[dict[str, Any]] = []
    for name, value in values.items():
        if name not in by_name:
            raise LookupError(f"/{command.name} has no option {name!r}")
        option: dict[str, Any] = {"type": by_name[name]["type"], "name": name, "value": value}
        if name == focused:
            option["focused"] = True
        options.append(option)
    if focused not in values:
        options.append(
            {"type": by_name[focused]["type"], "name": focused, "value": "", "focused": True}
        )
    for option_type, name in reversed(nesting):
        options = [{"type": option_type, "name": name, "options": options}]
    return options


def find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        children = list(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                children.append(component[key])
        found = find_component(children, custom_id)
        if found is not None:
            return found
    return None


def check_modal(data: dict[str, Any]) -> None:
    if not data.get("custom_id") or not data.get("title"):
        raise errors.field_error("data", "BASE_TYPE_REQUIRED", "custom_id and title are required")
    if not data.get("components"):
        raise errors.field_error("data.components", "BASE_TYPE_REQUIRED", "This field is required")


def modal_submission(
    components: list[dict[str, Any]], values: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Mirror the modal layout with the user's input (action rows or labels)."""
    result: list[dict[str, Any]] = []
    for component in components:
        kind = component.get("type")
        if kind == 1:  # action row with text inputs
            result.append(
                {
                    "type": 1,
                    "components": modal_submission(component.get("components") or [], values),
                }
            )
        elif kind == 18:  # label wrapping one component
            inner = modal_submission([component["component"]], values)
            result.append({"type": 18, "id": component.get("id", 0), "component": inner[0]})
        elif kind == 4:  # text input
            custom_id = component["custom_id"]
            if component.get("required", True) and not values.get(custom_id):
                raise ValueError(f"modal text input {custom_id!r} is required")
            result.append(
                {
                    "type": 4,
                    "id": component.get("id", 0),
                    "custom_id": custom_id,
                    "value": values.get(custom_id, ""),
                }
            )
        elif kind in (3, 5, 6, 7, 8):  # selects inside labels
            custom_id = component["custom_id"]
            picked = values.get(custom_id, [])
            result.append(
                {
                    "type": kind,
                    "id": component.get("id", 0),
                    "custom_id": custom_id,
                    "values": list(picked) if not isinstance(picked, str) else [picked],
                }
            )
        else:
            result.append({"type": kind, "id": component.get("id", 0)})
    return result
